"""The report stage of ``fusionlog run``: gathers routes, rounds, scores, metrics and the raw lines of the most
anomalous windows from the run directory, and renders ``<run>/report/report.html`` + ``metrics.json``."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from fusionlog.config import ExperimentConfig
from fusionlog.evaluate.rawlines import raw_lines_many
from fusionlog.evaluate.report import ReportData, write_report

METRIC_KEYS = ("precision", "recall", "f1", "pr_auc", "balanced_accuracy")


def _top(run: Path, target: str, scores, n: int) -> list[dict]:  # noqa: ANN001
    """The ``n`` highest-scored windows with where they are and their raw lines."""
    if n <= 0:
        return []
    top = scores.sort_values(["score", "window_id"], ascending=[False, True]).head(n)
    w = pq.read_table(run / "windows" / f"system={target}",
                      columns=["window_id", "first_file", "first_line", "last_file", "last_line", "label"]).to_pandas()
    w = w.set_index("window_id").loc[top["window_id"]]
    reasons: dict[str, str] = {}
    llm = run / "llm_labels" / f"system={target}"
    if llm.is_dir():
        t = pq.read_table(llm, columns=["window_id", "reason"]).to_pandas().dropna()
        reasons = dict(zip(t["window_id"], t["reason"], strict=True))
    same_file = [(f, a, b if lf == f else a) for f, a, b, lf in
                 zip(w["first_file"], w["first_line"], w["last_line"], w["last_file"], strict=True)]
    lines = raw_lines_many(same_file, max_lines=30)
    out = []
    for (wid, row), (_, s), ls in zip(w.iterrows(), top.iterrows(), lines, strict=True):
        label = None if row["label"] is None or (isinstance(row["label"], float) and np.isnan(row["label"])) \
            else int(row["label"])
        out.append({"window_id": wid, "score": float(s["score"]), "route": s["route"], "scorer": s["scorer"],
                    "label": label, "first_file": row["first_file"], "first_line": int(row["first_line"]),
                    "last_line": int(row["last_line"]), "lines": ls, "llm_reason": reasons.get(wid)})
    return out


def build_report(run: Path, exp: ExperimentConfig, summaries: dict[str, dict]) -> Path:
    run, target = Path(run), exp.target
    routes = pq.read_table(run / "routes" / f"system={target}").to_pandas()
    scores = pq.read_table(run / "scores" / f"system={target}").to_pandas()
    ev_path = run / "eval" / "run.json"
    ev = json.loads(ev_path.read_text()) if ev_path.exists() else {"methods": {}, "rounds": [], "labeled": 0}
    y = np.zeros(0, np.int8)
    s = np.zeros(0)
    if ev.get("labeled"):
        from fusionlog.evaluate.run_metrics import labeled

        ids, y, _ = labeled(run, target)
        s = scores.set_index("window_id").loc[ids]["score"].to_numpy(np.float64)
    th = exp.distill.threshold
    metrics = {m: {k: v["all"][k] for k in METRIC_KEYS} for m, v in ev["methods"].items()}
    distill = summaries.get("distill", {})
    route = summaries.get("route", {})
    counts: dict[str, int | float] = {"windows": len(routes), "general": int((routes["route"] == "general").sum()),
                                      "proprietary": int((routes["route"] == "proprietary").sum()),
                                      "kept pseudo-labels": int(distill.get("kept", 0) or 0)}
    client = distill.get("client") or {}
    if client:
        counts["llm requests"] = int(client.get("requests", 0))
        counts["llm abstained"] = int(client.get("abstained", 0))
    counts["llm calls (distill)"] = int(sum(r.get("llm_calls", 0) for r in distill.get("rounds", [])))
    counts["llm cache hits (distill)"] = int(sum(r.get("cache_hits", 0) for r in distill.get("rounds", [])))
    stage_seconds = 0.0
    for p in (run / "stages").glob("*.json"):
        stage_seconds += float(json.loads(p.read_text()).get("seconds", 0.0))
    counts["stage seconds"] = round(stage_seconds, 1)
    notes = [f"Scores: mode {exp.run.mode}; threshold {th}; the target's labels are read by the evaluate stage only."]
    if not ev.get("labeled"):
        notes.append(f"{target} has no labels here: the report shows scores, not their quality.")
    if exp.llm.get("backend") == "openai" and "test-double" in str(exp.llm.get("model", "")):
        notes.append("The LLM of this run is a TEST DOUBLE (a keyword rule): its labels are not an LLM's.")
    data = ReportData(
        title=f"FusionLog: {' + '.join(exp.sources)} → {target}", experiment=exp.name, target=target,
        sources=list(exp.sources), mode=exp.run.mode,
        created=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        x_sim=routes["x_sim"].to_numpy(np.float64), routes=routes["route"].to_numpy(),
        tau=float(route.get("tau", np.nan)),
        rounds=ev.get("rounds") or distill.get("rounds", []), y_true=y, y_score=s, y_pred=(s >= th).astype(np.int8),
        metrics=metrics, top_windows=_top(run, target, scores, exp.run.top_windows), notes=notes, counts=counts,
        main_method=exp.run.mode)
    write_report(run / "report", data)
    return run / "report" / "report.html"

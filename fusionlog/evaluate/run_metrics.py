"""The evaluate stage of ``fusionlog run``: every scored method's scores against the target's labels (read here
only, after everything else): the chosen methods and the registered baselines (all-anomalous, general-only,
rarity, ...); F1 of the model of each distillation round. Writes ``<run>/eval/run.json``.

F1 is that of each method's own labels (its label-free cut, ``cut``); PR-AUC and the oracle best F1 over all cuts
(``best_f1``: it reads the labels to choose the cut, so it is a ceiling, not a result) come from its scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fusionlog.config import ExperimentConfig
from fusionlog.evaluate.data_checks import inside_slice, label_balance, signature_ceiling
from fusionlog.evaluate.metrics import binary_metrics
from fusionlog.io import atomic_write_text
from fusionlog.methods import get, names
from fusionlog.rundir import method_notes_file, method_scores_dir, run_metrics_file, views_kept_dir
from fusionlog.stages import EvaluateOut
from fusionlog.train.data import read_windows


def labeled(run: Path, target: str) -> tuple[list[str], np.ndarray, dict]:
    """(ids, labels, signature ceiling) of the target's labeled windows (none on an unlabeled system: the default
    use, where ingest's ``label`` column is all null)."""
    t = read_windows(run, target, ["window_id", "label", "template_ids"])
    t = t.filter(pc.is_valid(t["label"]))
    labels = t["label"].to_pylist()
    ceiling = signature_ceiling(labels, [tuple(s) for s in t["template_ids"].to_pylist()]) if labels else {}
    return t["window_id"].to_pylist(), np.array(labels, np.int8), ceiling


def event_ranking(run: Path, target: str) -> dict | None:
    """ROC-AUC of the LLM's event scores against the events' labels (evaluation only): an event is anomalous when
    most of the labeled windows holding it are; ``roc_auc_triaged`` ranks them by the scores the ``llm-events`` view
    uses (triaged, where the judge stage triaged). None without event scores, labels or both classes."""
    from sklearn.metrics import roc_auc_score

    from fusionlog.llm.judge import read_event_scores
    from fusionlog.llm.triage import read_triage
    from fusionlog.methods.llm_events import triaged

    try:
        scores = read_event_scores(run, target)
    except FileNotFoundError:
        return None
    t = read_windows(run, target, ["label", "template_ids"])
    held: dict[int, list[int]] = {}
    for y, ids in zip(t["label"].to_pylist(), t["template_ids"].to_pylist(), strict=True):
        if y is not None:
            for e in set(ids):
                held.setdefault(e, []).append(int(y))
    lowered = triaged(scores, read_triage(run, target))
    pairs = [(float(np.mean(held[e]) > 0.5), s, lowered[e]) for e, s in scores.items() if s is not None and e in held]
    labels = [p[0] for p in pairs]
    if not pairs or len(set(labels)) < 2:
        return None
    return {"events": len(pairs), "anomalous_events": int(sum(labels)),
            "roc_auc": float(roc_auc_score(labels, [p[1] for p in pairs])),
            "roc_auc_triaged": float(roc_auc_score(labels, [p[2] for p in pairs]))}


def _by_route(y: np.ndarray, score: np.ndarray, route: np.ndarray, th: float, pred: np.ndarray) -> dict:
    out = {"all": binary_metrics(y, score, th, pred)}
    for name in ("general", "proprietary"):
        sel = route == name
        out[name] = binary_metrics(y[sel], score[sel], th, pred[sel]) if sel.any() else None
    return out


def views_precision(run: Path, target: str, rounds: list[dict], ids: list[str], y: np.ndarray) -> list[dict]:
    """Per round of the distillation on the agreeing views: the precision of the kept pool so far (all, and per
    pseudo-label class: the share of windows kept as anomalous that are, and as normal that are), and the
    ROC-AUC of the round's model (evaluation only)."""
    from sklearn.metrics import roc_auc_score

    from fusionlog.model.score import score_system

    d = views_kept_dir(run, target)
    if not rounds or not d.is_dir():
        return []
    kept = pq.read_table(d).to_pylist()
    truth = dict(zip(ids, y.tolist(), strict=True))
    out = []
    for r in rounds:
        r = dict(r)
        pool = [(k["label"], truth[k["window_id"]]) for k in kept
                if k["round"] <= r["round"] and k["window_id"] in truth]
        right = [int(p == t) for p, t in pool]
        r["kept_precision"] = float(np.mean(right)) if right else None
        for c, name in ((1, "anomalous"), (0, "normal")):
            cls = [int(p == t) for p, t in pool if p == c]
            r[f"kept_precision_{name}"] = float(np.mean(cls)) if cls else None
        if r.get("model_dir") and 0 < y.sum() < len(y):
            wid, s = score_system(run, Path(r["model_dir"]), target)
            pos = dict(zip(wid, s.tolist(), strict=True))
            r["roc_auc"] = float(roc_auc_score(y, [pos[i] for i in ids]))
        out.append(r)
    return out


def inside(run: Path, exp: ExperimentConfig, ids: list[str], y: np.ndarray) -> tuple[np.ndarray, dict] | None:
    """Where the target's windows are sessions cut from a raw log: the mask (over ``ids``) of those whose life cycle
    lies inside the slice (:func:`fusionlog.evaluate.data_checks.inside_slice`) and what the run records of them
    (rule, margin, windows, anomalous, their signature ceiling); None elsewhere."""
    from fusionlog.experiment import window_kinds

    spec = exp.datasets.get(exp.target)
    if spec is None or spec.kind != "raw" or window_kinds(exp).get(exp.target) != "session" or not len(ids):
        return None
    sl = inside_slice(run, exp.target)
    if sl is None:
        return None
    keep = set(sl.pop("window_ids"))
    sel = np.array([i in keep for i in ids], bool)
    t = read_windows(run, exp.target, ["window_id", "template_ids"])
    sig = dict(zip(t["window_id"].to_pylist(), t["template_ids"].to_pylist(), strict=True))
    ceiling = signature_ceiling(y[sel].tolist(), [tuple(sig[i]) for i, k in zip(ids, sel, strict=True) if k])
    return sel, {**sl, "windows": int(sel.sum()), "anomalous": int(y[sel].sum()), "signature_ceiling": ceiling}


def evaluate_run(run: Path, exp: ExperimentConfig, methods: list[str], rounds: list[dict],
                 views_rounds: list[dict] | None = None) -> EvaluateOut:
    """Metrics of every scored method (``modes/<method>/scores``) on the labeled target windows, F1 of each
    distillation round's model (``rounds``) and the kept pool's precision of each round of the distillation on
    the agreeing views (``views_rounds``); {} parts when unlabeled."""
    from fusionlog.model.score import score_system

    run = Path(run)
    th = exp.run.threshold
    ids, y, ceiling = labeled(run, exp.target)
    result: dict = {"experiment": exp.name, "target": exp.target, "sources": exp.sources, "mode": exp.run.mode,
                    "seed": exp.run.seed, "threshold": th, "labeled": len(ids), "anomalous": int(y.sum()),
                    "methods": {}, "rounds": [], "signature_ceiling": ceiling,
                    "label_balance": label_balance(run, exp.target)}
    sub = inside(run, exp, ids, y)
    if sub is not None:
        result["inside_slice"] = sub[1]
    if len(ids):
        for mode in methods:
            t = pq.read_table(method_scores_dir(run, mode, exp.target)).to_pandas()
            t = t.set_index("window_id").loc[ids]
            score, pred = t["score"].to_numpy(np.float64), t["label"].to_numpy()
            m = _by_route(y, score, t["route"].to_numpy(), th, pred)
            if sub is not None:
                sel = sub[0]
                m["inside_slice"] = binary_metrics(y[sel], score[sel], th, pred[sel]) if sel.any() else None
            m["llm_scored"] = int((t["scorer"] == "llm").sum())
            m["cut"] = get(mode).cut if mode in names() else ""
            notes = method_notes_file(run, mode)
            if notes.exists():
                m["notes"] = json.loads(notes.read_text())
            result["methods"][mode] = m
    result["event_ranking"] = event_ranking(run, exp.target) if len(ids) else None
    rounds = [dict(r) for r in rounds]
    for r in rounds:
        if len(ids) and r.get("model_dir"):
            wid, s = score_system(run, Path(r["model_dir"]), exp.target)
            pos = dict(zip(wid, s.tolist(), strict=True))
            r["f1_labeled"] = binary_metrics(y, np.array([pos[i] for i in ids]), th)["f1"]
    result["rounds"] = rounds
    result["views_rounds"] = views_precision(run, exp.target, views_rounds or [], ids, y) if len(ids) else []
    if not len(ids):  # nothing to measure: what each method flags, over every window, is what there is to show
        flags = {m: pq.read_table(method_scores_dir(run, m, exp.target), columns=["label"])["label"] for m in methods}
        result["windows"] = len(next(iter(flags.values()))) if flags else 0
        result["flagged"] = {m: int(pc.sum(f).as_py() or 0) for m, f in flags.items()}
    atomic_write_text(run_metrics_file(run), json.dumps(result, indent=2, default=float))
    flagged = (result["flagged"] if not len(ids)
               else {m: int(v["all"]["tp"] + v["all"]["fp"]) for m, v in result["methods"].items()})
    inside_f1 = ({m: v["inside_slice"]["f1"] for m, v in result["methods"].items() if v.get("inside_slice")}
                 if sub is not None else None)
    return EvaluateOut(len(ids), {m: v["all"]["f1"] for m, v in result["methods"].items()},
                       [r.get("f1_labeled") for r in rounds], anomalous=result["anomalous"], flagged=flagged,
                       windows=result.get("windows"), inside=None if sub is None else {
                           "windows": sub[1]["windows"], "anomalous": sub[1]["anomalous"],
                           "margin_s": sub[1]["margin_s"], "f1": inside_f1})

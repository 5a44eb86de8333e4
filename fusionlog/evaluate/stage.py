"""``fusionlog evaluate``: train each objective for each seed, score every labeled target window, and compare with
baselines in the same run. The target's labels are read here only, after training.

Methods: the training objectives (``source_only`` = baseline a; ``meta`` = the ZeroLog/FreeLog branch, baseline b;
``meta_align`` = FusionLog's general branch), and trivial baselines (c): ``majority`` (the sources' majority
label for every window), ``all_anomalous`` (the F1 floor of a detector that flags everything) and
``router_novelty`` (score 1 - x_sim: proprietary windows are called anomalous).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fusionlog.config import ExperimentConfig
from fusionlog.evaluate.data_checks import duplicates, label_balance, signature_ceiling
from fusionlog.evaluate.metrics import binary_metrics
from fusionlog.io import atomic_write_text
from fusionlog.model.score import score_system
from fusionlog.route.stage import SWEEP
from fusionlog.rundir import experiment_eval_file, route_stats_file, table_dir
from fusionlog.train.data import read_windows
from fusionlog.train.stage import train

KEYS = ("f1", "precision", "recall", "pr_auc", "balanced_accuracy")


def _target(run: Path, target: str) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, dict]:
    """Labeled target windows: ids, labels, x_sim, general flag (from routes/), and the signature ceiling."""
    t = read_windows(run, target, ["window_id", "label", "template_ids"])
    t = t.filter(pc.is_valid(t["label"]))
    if t.num_rows == 0:
        raise ValueError(f"target {target}: no labeled window to evaluate on")
    routes = pq.read_table(table_dir(run, "routes", target), columns=["window_id", "x_sim", "route"])
    r = dict(zip(routes["window_id"].to_pylist(), zip(routes["x_sim"].to_pylist(), routes["route"].to_pylist(),
                                                       strict=True), strict=True))
    ids = t["window_id"].to_pylist()
    xs = np.array([r[i][0] for i in ids], np.float64)
    general = np.array([r[i][1] == "general" for i in ids])
    labels = t["label"].to_pylist()
    ceiling = signature_ceiling(labels, [tuple(s) for s in t["template_ids"].to_pylist()])
    return ids, np.array(labels, np.int8), xs, general, ceiling


def _metrics(y: np.ndarray, score: np.ndarray, general: np.ndarray, threshold: float) -> dict:
    out = {"all": binary_metrics(y, score, threshold)}
    for name, sel in (("general", general), ("proprietary", ~general)):
        out[name] = binary_metrics(y[sel], score[sel], threshold) if sel.any() else None
    return out


def branch_sweep(y: np.ndarray, scores: list[np.ndarray], xs: np.ndarray, threshold: float,
                 taus: list[float]) -> list[dict]:
    """Per tau: the windows routed each way, and the F1 (mean over ``scores``, one per seed) of the model on
    each branch. The proprietary branch here is scored by the same small model (before distillation)."""
    out = []
    for tau in taus:
        row: dict = {"tau": tau}
        for name, sel in (("general", xs >= tau), ("proprietary", xs < tau)):
            f1 = [binary_metrics(y[sel], s[sel], threshold)["f1"] for s in scores] if sel.any() else []
            row[name] = {"n": int(sel.sum()), "anomalous": int(y[sel].sum()),
                         "f1": float(np.mean(f1)) if f1 else None}
        out.append(row)
    return out


def _summary(runs: list[dict]) -> dict:
    out = {}
    for scope in ("all", "general"):
        vals = [r[scope] for r in runs if r.get(scope)]
        if not vals:
            continue
        out[scope] = {k: {"mean": float(np.nanmean([v[k] for v in vals])),
                          "std": float(np.nanstd([v[k] for v in vals]))} for k in KEYS}
        out[scope]["n"] = vals[0]["n"]
        out[scope]["positives"] = vals[0]["positives"]
    return out


def evaluate(run: Path, exp: ExperimentConfig, progress: Callable[[str], None] | None = None) -> dict:
    """Train + score every (objective, seed), compute the baselines; write ``<run>/eval/<name>.json`` and ``.md``."""
    say = progress or (lambda _msg: None)
    run = Path(run).resolve()
    t0 = time.perf_counter()
    ids, y, xs, general, ceiling = _target(run, exp.target)
    th = exp.run.threshold
    methods: dict[str, dict] = {}
    trained: dict[str, list[dict]] = {}
    scored: dict[str, list[np.ndarray]] = {}
    for mode in exp.evaluate.objectives:
        for seed in exp.evaluate.seeds:
            cfg = exp.train.model_copy(update={"objective": mode, "seed": seed})
            say(f"train {mode} seed {seed}")
            res = train(run, exp.sources, exp.target, cfg, exp.model)
            wid, score = score_system(run, Path(res.model_dir), exp.target)
            pos = dict(zip(wid, score.tolist(), strict=True))
            score = np.array([pos[i] for i in ids])
            scored.setdefault(mode, []).append(score)
            m = _metrics(y, score, general, th)
            m.update({"seed": seed, "best_step": res.best_step, "val": res.val, "train_seconds": res.seconds,
                      "reused": res.reused, "notes": res.notes})
            trained.setdefault(mode, []).append(m)
    for mode, runs in trained.items():
        methods[mode] = {"runs": runs, **_summary(runs)}
    if exp.evaluate.reference:
        methods["reference_in_domain"] = _reference(run, exp, ids, y, general, say)
    majority = float(np.mean(_source_train_labels(run, exp.sources)) >= 0.5)
    for name, score in (("majority", np.full(len(y), majority)), ("all_anomalous", np.ones(len(y))),
                        ("router_novelty", 1.0 - xs)):
        thr = th if name != "router_novelty" else 1.0 - _tau(run, exp.target) + 1e-9
        m = _metrics(y, score, general, thr)
        methods[name] = {"runs": [m], **_summary([m])}
    result = {
        "experiment": exp.name, "description": exp.description, "sources": exp.sources, "target": exp.target,
        "threshold": th, "seeds": exp.evaluate.seeds, "train": exp.train.model_dump(), "model": exp.model.model_dump(),
        "route": {"general": int(general.sum()), "proprietary": int((~general).sum()), "tau": _tau(run, exp.target)},
        "label_balance": {s: label_balance(run, s) for s in [*exp.sources, exp.target]},
        "duplicates": duplicates(run, exp.sources, exp.target), "signature_ceiling": ceiling,
        "methods": methods,
        "sweep": {mode: branch_sweep(y, sc, xs, th, _taus(xs)) for mode, sc in scored.items()},
        "seconds": time.perf_counter() - t0,
    }
    atomic_write_text(experiment_eval_file(run, exp.name), json.dumps(result, indent=2, default=float))
    atomic_write_text(experiment_eval_file(run, exp.name, ".md"), markdown(result))
    return result


def _reference(run: Path, exp: ExperimentConfig, ids: list[str], y: np.ndarray, general: np.ndarray,
               say: Callable[[str], None]) -> dict:
    """Supervised on the target's own train split (chronological), scored on its test split only."""
    t = read_windows(run, exp.target, ["window_id", "split"])
    test = {w for w, s in zip(t["window_id"].to_pylist(), t["split"].to_pylist(), strict=True) if s == "test"}
    sel = np.array([i in test for i in ids])
    runs = []
    for seed in exp.evaluate.seeds:
        say(f"train reference (target labels) seed {seed}")
        cfg = exp.train.model_copy(update={"objective": "source_only", "seed": seed})
        res = train(run, [exp.target], None, cfg, exp.model, name=f"reference-{exp.target}-s{seed}")
        wid, score = score_system(run, Path(res.model_dir), exp.target)
        pos = dict(zip(wid, score.tolist(), strict=True))
        s = np.array([pos[i] for i in ids])
        m = _metrics(y[sel], s[sel], general[sel], exp.run.threshold)
        m.update({"seed": seed, "best_step": res.best_step, "val": res.val, "reused": res.reused})
        runs.append(m)
    return {"runs": runs, **_summary(runs), "note": "target labels used (train split); scored on the test split"}


def _taus(xs: np.ndarray) -> list[float]:
    """The issue's 0.50..0.90, plus the quartiles and the mean of x_sim (this embedding's scale is lower)."""
    data = [float(np.quantile(xs, q)) for q in (0.25, 0.5, 0.75)] + [float(xs.mean())]
    return sorted({round(t, 3) for t in [*SWEEP, *data]})


def _source_train_labels(run: Path, sources: list[str]) -> list[int]:
    out: list[int] = []
    for s in sources:
        t = read_windows(run, s, ["label", "split"])
        out += t.filter(pc.equal(t["split"], "train"))["label"].drop_null().to_pylist()
    return out


def _tau(run: Path, target: str) -> float:
    return float(json.loads(route_stats_file(run, target).read_text())["tau"])


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _pm(d: dict | None, key: str) -> str:
    if not d:
        return "-"
    v = d[key]
    return f"{v['mean']:.3f} ± {v['std']:.3f}"


def markdown(result: dict) -> str:
    """The results as a markdown table (F1 on all labeled target windows, and on the general ones)."""
    r = result["route"]
    lines = [f"### {result['experiment']}: {' + '.join(result['sources'])} → {result['target']}", "",
             f"{result['description']}. Routed: {r['general']} general / {r['proprietary']} proprietary "
             f"(τ = {r['tau']:.3f}). Seeds {result['seeds']}; threshold {result['threshold']}.", "",
             "| method | F1 (all) | precision | recall | PR-AUC | balanced acc. | F1 (general windows) | val F1 |",
             "|---|---|---|---|---|---|---|---|"]
    for name, m in result["methods"].items():
        a, g = m.get("all"), m.get("general")
        if name == "reference_in_domain":
            name = f"reference: target labels, test split only (n={a['n']})"
        gen = f"{_pm(g, 'f1')} (n={g['n']}, {g['positives']} anom.)" if g else "- (no general window)"
        vals = [r["val"]["val_f1"] for r in m["runs"] if r.get("val")]
        val = f"{np.mean(vals):.3f}" if vals else "-"
        lines.append(f"| {name} | {_pm(a, 'f1')} | {_pm(a, 'precision')} | {_pm(a, 'recall')} | {_pm(a, 'pr_auc')} "
                     f"| {_pm(a, 'balanced_accuracy')} | {gen} | {val} |")
    a = result["methods"]["majority"]["all"]
    sweep = result.get("sweep", {})
    if sweep:
        mode = "meta_align" if "meta_align" in sweep else next(iter(sweep))
        lines += ["", f"τ sweep ({mode}, F1 mean over seeds; both branches scored by the small model):", "",
                  "| τ | general (anom.) | F1 general | proprietary (anom.) | F1 proprietary |",
                  "|---|---|---|---|---|"]
        for row in sweep[mode]:
            g, p = row["general"], row["proprietary"]
            lines.append(f"| {row['tau']:.3f} | {g['n']} ({g['anomalous']}) | {_f(g['f1'])} | {p['n']} "
                         f"({p['anomalous']}) | {_f(p['f1'])} |")
    c = result["signature_ceiling"]
    lines += ["", "val F1: on the validation split of the training data (the sources; the target for the reference).",
              "", f"Target windows evaluated: {a['n']} ({a['positives']} anomalous), {c['distinct']} distinct template "
              f"sequences; {c['windows_in_conflict']} windows share their sequence with windows of the other label, "
              f"so no sequence-based detector exceeds F1 {c['best_f1']:.3f} here."]
    return "\n".join(lines) + "\n"

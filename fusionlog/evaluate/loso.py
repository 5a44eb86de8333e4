"""``fusionlog results --loso``: the development set scored leave-one-system-out (DESIGN.md, "Evaluation protocol").

Each dataset of the development set (``conf/devsets/<name>.yaml``) is the target once, every other one its labeled
source (:meth:`fusionlog.config.DevSetConfig.fold`), each fold a ``fusionlog results`` over the seeds in a run
directory of its own under the root (``<root>/<devset>-<target>``). The folds share one LLM cache
(``<root>/llm_cache.sqlite``, linked from each fold's run directory), and so do the variants of a development set
run under the same root: an event's answers are the same in every fold, so a LOSO run asks the LLM once per system,
not once per fold. The table: per target and method, F1 (mean ± std over the seeds), PR-AUC and balanced accuracy;
the best label-free baseline of the same run; the mean over the targets, which decides (a change is kept when it
rises and no target falls by more than 0.03).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fusionlog.config import DevSetConfig
from fusionlog.evaluate.results import cell, columns
from fusionlog.io import atomic_write_text
from fusionlog.methods import REGISTRY, names
from fusionlog.rundir import llm_cache_file

SHARED_CACHE = "llm_cache.sqlite"
# label-free: reads neither the target's labels nor the sources' (the small model, general-only, reads the sources')
NOT_LABEL_FREE = ("general-only",)


def label_free() -> list[str]:
    """The methods that read no label at all: the registered baselines but the transferred small model, and the
    LLM's event view (a view of the fusion, scored alone)."""
    return [n for n in names() if (REGISTRY[n].baseline and n not in NOT_LABEL_FREE) or n == "llm-events"]


def share_cache(root: Path, run: Path) -> None:
    """Point ``run``'s LLM cache at the root's (a relative symbolic link; an existing cache file is moved there
    first when the root has none, so answers already paid for are kept)."""
    shared, own = Path(root) / SHARED_CACHE, llm_cache_file(run)
    run.mkdir(parents=True, exist_ok=True)
    if own.is_symlink():
        return
    if own.exists():
        if shared.exists():
            raise FileExistsError(f"{own} and {shared} both exist: a fold's LLM cache would be lost; move one away")
        own.replace(shared)
    own.symlink_to(os.path.relpath(shared, run))


def loso(dev: DevSetConfig, root: Path, seeds: list[int], modes: list[str] | None = None,
         progress: Callable[[str], None] | None = None) -> dict:
    """Every fold of ``dev`` over ``seeds`` (:func:`fusionlog.evaluate.results.results`); the LOSO summary, also
    written to ``<root>/<devset>.loso.json`` and ``<root>/<devset>.loso.md``."""
    from fusionlog.evaluate.results import results

    say = progress or (lambda _m: None)
    root = Path(root)
    rows = []
    for exp in dev.folds():
        run = root / exp.name
        share_cache(root, run)
        say(f"LOSO fold {exp.name}: {', '.join(exp.sources)} -> {exp.target}")
        rows.append(results(exp, run, seeds, modes or list(exp.run.compare), say))
    out = summarize(dev.name, rows)
    atomic_write_text(root / f"{dev.name}.loso.json", json.dumps(out, indent=2, default=float))
    atomic_write_text(root / f"{dev.name}.loso.md", markdown(out))
    return out


def summarize(name: str, rows: list[dict]) -> dict:
    """Per method: F1, PR-AUC, balanced accuracy per target and F1's mean over the targets; per target: the best
    label-free baseline (by mean F1)."""
    methods = columns(rows)
    free = set(label_free())
    per_target = {}
    for r in rows:
        base = {m: s["mean"] for m, s in r["summary"].items() if m in free}
        best = max(base, key=base.get) if base else None
        per_target[r["target"]] = {"experiment": r["experiment"], "sources": r["sources"], "windows": r["labeled"],
                                   "anomalous": r["anomalous"], "best_label_free": best,
                                   "best_label_free_f1": base.get(best) if best else None}
    table = {}
    for m in methods:
        f1 = {r["target"]: r["summary"].get(m) for r in rows}
        table[m] = {"f1": f1, "pr_auc": {r["target"]: r.get("pr_auc", {}).get(m) for r in rows},
                    "balanced_accuracy": {r["target"]: r.get("balanced_accuracy", {}).get(m) for r in rows},
                    "mean_f1": float(np.mean([v["mean"] for v in f1.values()])) if all(f1.values()) else None}
    return {"devset": name, "targets": per_target, "methods": table, "seeds": [s["seed"] for s in rows[0]["seeds"]]
            if rows else [], "folds": rows}


def markdown(out: dict) -> str:
    """The LOSO table: one row per method, F1 per target (mean ± std over the seeds) and their mean; then PR-AUC and
    balanced accuracy; then each target's best label-free baseline."""
    targets = list(out["targets"])
    head = ["method", *[f"{t} F1" for t in targets], "mean F1", *[f"{t} PR-AUC" for t in targets],
            *[f"{t} bal. acc." for t in targets]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, v in out["methods"].items():
        mean = "-" if v["mean_f1"] is None else f"{v['mean_f1']:.3f}"
        cells = [m, *[cell(v["f1"][t]) for t in targets], mean,
                 *[cell(v["pr_auc"][t]) for t in targets], *[cell(v["balanced_accuracy"][t]) for t in targets]]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| target | sources | windows (anomalous) | best label-free baseline (F1) |", "|---|---|---|---|"]
    for t, x in out["targets"].items():
        best = "-" if x["best_label_free"] is None else f"{x['best_label_free']} ({x['best_label_free_f1']:.3f})"
        lines.append(f"| {t} | {', '.join(x['sources'])} | {x['windows']} ({x['anomalous']}) | {best} |")
    return "\n".join(lines) + "\n"

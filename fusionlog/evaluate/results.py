"""``fusionlog results``: every mode of an experiment for several seeds, in one run directory (ingest, embed and
route are shared; the LLM's verdict cache too, so a later seed asks only what its own rounds change), with the
F1 of each mode (mean ± std), the LLM calls and the wall time of each seed's run."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fusionlog.config import MODES, ExperimentConfig
from fusionlog.io import atomic_write_text

COLUMNS = (*MODES, "general-only", "all_anomalous")


def llm_calls(distill: dict) -> int:
    """Signatures sent to the LLM in a run (cache misses): llm-only labels plus every round's."""
    return int(distill.get("llm_only", {}).get("calls", 0) + sum(r.get("llm_calls", 0) for r in distill.get("rounds",
                                                                                                            [])))


def results(exp: ExperimentConfig, run: Path, seeds: list[int], modes: list[str] | None = None,
            progress: Callable[[str], None] | None = None) -> dict:
    from fusionlog.pipeline import run_experiment

    say = progress or (lambda _m: None)
    run = Path(run)
    per_seed = []
    for seed in seeds:
        spec = exp.run.model_copy(update={"seed": seed, "compare": list(modes or MODES)})
        t0 = time.perf_counter()
        summaries = run_experiment(exp.model_copy(update={"run": spec}), run, progress=say)
        wall = time.perf_counter() - t0
        ev = json.loads((run / "eval" / "run.json").read_text())
        shutil.copy2(run / "eval" / "run.json", run / "eval" / f"run-s{seed}.json")
        per_seed.append({"seed": seed, "wall_seconds": wall, "llm_calls": llm_calls(summaries["distill"]),
                         "llm_requests": summaries["distill"].get("client", {}).get("requests", 0),
                         "f1": {m: v["all"]["f1"] for m, v in ev["methods"].items()},
                         "pr_auc": {m: v["all"]["pr_auc"] for m, v in ev["methods"].items()},
                         "rounds": [{k: r.get(k) for k in ("round", "epsilon", "labeled", "agreed", "kept",
                                                           "kept_total", "clean_ratio", "f1_labeled")}
                                    for r in ev["rounds"]],
                         "route": {k: summaries["route"].get(k) for k in ("tau", "general", "proprietary")}})
    out = {"experiment": exp.name, "description": exp.description, "sources": exp.sources, "target": exp.target,
           "labeled": ev["labeled"], "anomalous": ev["anomalous"], "seeds": per_seed, "summary": {}}
    for m in COLUMNS:
        vals = [s["f1"][m] for s in per_seed if m in s["f1"]]
        if vals:
            out["summary"][m] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "n": len(vals)}
    atomic_write_text(run / "eval" / "results.json", json.dumps(out, indent=2, default=float))
    return out


def markdown(rows: list[dict]) -> str:
    """One line per experiment: F1 (mean ± std over seeds) of each mode and baseline, LLM calls, wall time."""
    head = ["experiment", "target windows (anom.)", *COLUMNS, "LLM calls per seed", "wall s per seed"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["experiment"], f"{r['labeled']} ({r['anomalous']})"]
        for m in COLUMNS:
            s = r["summary"].get(m)
            cells.append("-" if s is None else f"{s['mean']:.3f}" + (f" ± {s['std']:.3f}" if s["n"] > 1 else ""))
        cells.append(" / ".join(str(s["llm_calls"]) for s in r["seeds"]))
        cells.append(" / ".join(f"{s['wall_seconds']:.0f}" for s in r["seeds"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

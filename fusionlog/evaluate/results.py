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

from fusionlog.config import ExperimentConfig
from fusionlog.io import atomic_write_text
from fusionlog.methods import REGISTRY, baselines, names
from fusionlog.rundir import results_file, run_metrics_file, seed_metrics_file

MEASURABLE = 0.5  # a target whose labels cap every sequence-based detector below this F1 is marked not measurable


def compared() -> list[str]:
    """The registered methods that are not baselines (a run compares them all by default)."""
    return [n for n in names() if not REGISTRY[n].baseline]


def columns(rows: list[dict]) -> list[str]:
    """Methods in the rows' summaries: the compared ones first, then the baselines, then anything else."""
    seen = {m for r in rows for m in r["summary"]}
    order = [*compared(), *baselines()]
    return [m for m in order if m in seen] + sorted(seen - set(order))


def results(exp: ExperimentConfig, run: Path, seeds: list[int], modes: list[str] | None = None,
            progress: Callable[[str], None] | None = None) -> dict:
    from fusionlog.pipeline import run_experiment

    say = progress or (lambda _m: None)
    run = Path(run)
    per_seed = []
    for seed in seeds:
        spec = exp.run.model_copy(update={"seed": seed, "compare": list(modes or compared())})
        t0 = time.perf_counter()
        state = run_experiment(exp.model_copy(update={"run": spec}), run, progress=say)
        wall = time.perf_counter() - t0
        ev = json.loads(run_metrics_file(run).read_text())
        shutil.copy2(run_metrics_file(run), seed_metrics_file(run, seed))
        per_seed.append({"seed": seed, "wall_seconds": wall,  # LLM calls this seed's run made (a stage read back: 0)
                         "llm_calls": state.distill.llm_calls if "distill" in state.ran else 0,
                         "llm_event_calls": state.judge.calls() if state.judge and "judge" in state.ran else 0,
                         "best_f1": {m: v["all"].get("best_f1") for m, v in ev["methods"].items()},
                         "event_ranking": ev.get("event_ranking"),
                         "llm_requests": state.distill.client.get("requests", 0),
                         "f1": {m: v["all"]["f1"] for m, v in ev["methods"].items()},
                         "f1_inside_slice": {m: v["inside_slice"]["f1"] for m, v in ev["methods"].items()
                                             if v.get("inside_slice")},
                         "pr_auc": {m: v["all"]["pr_auc"] for m, v in ev["methods"].items()},
                         "balanced_accuracy": {m: v["all"]["balanced_accuracy"] for m, v in ev["methods"].items()},
                         "flagged": {m: int(v["all"]["tp"] + v["all"]["fp"]) for m, v in ev["methods"].items()},
                         "rounds": [{k: r.get(k) for k in ("round", "epsilon", "labeled", "agreed", "kept",
                                                           "kept_total", "clean_ratio", "f1_labeled")}
                                    for r in ev["rounds"]],
                         "views_rounds": [{k: r.get(k) for k in ("round", "epsilon", "confidence", "kept_total",
                                                                 "kept_precision", "kept_precision_anomalous",
                                                                 "kept_precision_normal", "roc_auc")}
                                          for r in ev.get("views_rounds") or []],
                         "route": {"tau": state.route.tau, "general": state.route.general,
                                   "proprietary": state.route.proprietary}})
    ceiling = (ev.get("signature_ceiling") or {}).get("best_f1")
    out = {"experiment": exp.name, "description": exp.description, "sources": exp.sources, "target": exp.target,
           "labeled": ev["labeled"], "anomalous": ev["anomalous"], "seeds": per_seed, "summary": {},
           "label_ceiling": ceiling, "measurable": ceiling is None or ceiling >= MEASURABLE}
    if ev.get("inside_slice"):
        out["inside_slice"] = {**ev["inside_slice"], "summary": summary(per_seed, "f1_inside_slice")}
    out["summary"] = summary(per_seed, "f1")
    out["pr_auc"] = summary(per_seed, "pr_auc")
    out["balanced_accuracy"] = summary(per_seed, "balanced_accuracy")
    atomic_write_text(results_file(run), json.dumps(out, indent=2, default=float))
    return out


def summary(per_seed: list[dict], key: str) -> dict[str, dict]:
    """Method -> mean, std and count over the seeds of ``seed[key][method]``."""
    out = {}
    for m in dict.fromkeys(m for s in per_seed for m in s.get(key, {})):
        vals = [s[key][m] for s in per_seed if m in s.get(key, {})]
        if vals:
            out[m] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "n": len(vals)}
    return out


def cell(s: dict | None) -> str:
    return "-" if s is None else f"{s['mean']:.3f}" + (f" ± {s['std']:.3f}" if s["n"] > 1 else "")


def _kept(rounds: list[dict]) -> str:
    """The last round's kept pool: ``normal/anomalous (precision)``; ``-`` when the distillation did not run."""
    if not rounds:
        return "-"
    last = rounds[-1]
    kt, prec = last.get("kept_total") or [0, 0], last.get("kept_precision")
    return f"{kt[0]}/{kt[1]}" + ("" if prec is None else f" ({prec:.3f})")


def markdown(rows: list[dict]) -> str:
    """One line per experiment: F1 (mean ± std over seeds) of each mode and baseline, LLM calls, wall time; a target
    whose labels cap every sequence-based detector below :data:`MEASURABLE` says so (e.g. OpenStack's file-level
    labels, ceiling F1 0.18). Targets of sessions cut from a slice of a longer log get a second table: the same
    methods on the sessions inside the slice."""
    cols = columns(rows)
    head = ["experiment", "target windows (anom.)", *cols, "distilled on agreeing views: kept normal/anomalous, "
            "kept-pool precision (last round, per seed)", "LLM calls per seed (events + windows)", "wall s per seed"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        name = r["experiment"]
        if not r["labeled"]:
            name += " (no labeled window: not evaluated)"
        elif r.get("measurable") is False:
            name += f" (not measurable: its labels cap any detector at F1 {r['label_ceiling']:.2f})"
        cells = [name, f"{r['labeled']} ({r['anomalous']})"]
        cells += [cell(r["summary"].get(m)) for m in cols]
        cells.append(" / ".join(_kept(s.get("views_rounds") or []) for s in r["seeds"]))
        cells.append(" / ".join(f"{s.get('llm_event_calls', 0)} + {s['llm_calls']}" for s in r["seeds"]))
        cells.append(" / ".join(f"{s['wall_seconds']:.0f}" for s in r["seeds"]))
        lines.append("| " + " | ".join(cells) + " |")
    inside = [r for r in rows if r.get("inside_slice")]
    if inside:  # sessions cut from a slice of a longer log: the same methods on the sessions inside it
        lines += ["", "Sessions cut from a slice of a longer log, evaluated again on those whose life cycle lies "
                  f"inside the slice ({inside[0]['inside_slice']['rule']}):", "",
                  "| " + " | ".join(["experiment", "margin s", "windows inside (anom.)", "their label ceiling", *cols])
                  + " |", "|" + "---|" * (4 + len(cols))]
        for r in inside:
            i = r["inside_slice"]
            ceil = (i.get("signature_ceiling") or {}).get("best_f1")
            cells = [r["experiment"], f"{i['margin_s']:.0f}", f"{i['windows']} ({i['anomalous']})",
                     "-" if ceil is None else f"{ceil:.3f}", *[cell(i["summary"].get(m)) for m in cols]]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

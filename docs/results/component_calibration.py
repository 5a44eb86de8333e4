"""Contextual calibration in the event's own context, for docs/pipeline.md ("Measured (2026-12-06)"). Evaluation
only: ``score`` reads the target's labels to measure; nothing here feeds the product.

    python docs/results/component_calibration.py ask RUN SYSTEM CACHE OUT.json   # starts the LLM service if needed
    python docs/results/component_calibration.py score OUT.json RUN SYSTEM        # RUN's windows and severity's labels

The product's question shows the event's component beside its message, but its content-free inputs (``N/A``, an
empty message, ``[MASK]``) are asked with the component ``unknown``. ``ask`` asks every event of SYSTEM the default
question and the same content-free inputs once per component of the system's events. ``score`` prints, for the
product's scores and for each event calibrated against the content-free inputs *of its own component*
(``logit p - logit p_cf(component)``), the event ranking's ROC-AUC and, with the two-component mixture's cut, the
LLM view's and the fusion's F1 (fusion = the view and severity both, as on a target with levels).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

FREE = ("N/A", "", "[MASK]")  # the judge's content-free inputs (fusionlog.llm.judge.CONTENT_FREE)


def ask(run: Path, system: str, cache_path: Path, out: Path) -> None:
    from fusionlog.cli import _llm_cfg
    from fusionlog.llm.cache import ProbabilityCache
    from fusionlog.llm.endpoint import llm_client
    from fusionlog.llm.judge import Event, events_of, judge

    cfg, cache, evs = _llm_cfg(None), ProbabilityCache(cache_path), events_of(run, system)
    comps = sorted({e.component for e in evs})
    free = [Event(10_000 * (i + 1) + k, text, "unknown", c) for i, c in enumerate(comps) for k, text in enumerate(FREE)]
    with llm_client(cfg) as client:
        t, st = judge(client, system, evs, cache=cache, concurrency=cfg.concurrency)
        print("events", st.line(), flush=True)
        f, st = judge(client, system, free, cache=cache, concurrency=cfg.concurrency)
        print("content-free per component", st.line(), flush=True)
    p = dict(zip(t.column("template_id").to_pylist(), t.column("p_yes").to_pylist(), strict=True))
    q = dict(zip(f.column("template_id").to_pylist(), f.column("p_yes").to_pylist(), strict=True))
    res = {"p": {e.template_id: p[e.template_id] for e in evs}, "component": {e.template_id: e.component for e in evs},
           "p_cf": {c: [q[10_000 * (i + 1) + k] for k in range(len(FREE))] for i, c in enumerate(comps)},
           "p_cf_unknown": st.p_cf}
    out.write_text(json.dumps(res, indent=1))


def score(answers: Path, run: Path, system: str) -> None:
    from fusionlog.llm.judge import logit

    sys.path.insert(0, str(Path(__file__).parent))
    from event_question_variants import line_windows, scored

    a = json.loads(answers.read_text())
    p = {int(k): v for k, v in a["p"].items()}
    comp = {int(k): v for k, v in a["component"].items()}
    cf = {c: float(np.mean([logit(x) for x in v])) for c, v in a["p_cf"].items()}
    print("content-free P(yes) per component:",
          ", ".join(f"{c} {1 / (1 + np.exp(-z)):.3f}" for c, z in sorted(cf.items(), key=lambda kv: kv[1])))
    w, y, s, ev_label = line_windows(run, system)
    variants = {"as shipped (content-free with component unknown; the mixture over logit p)":
                {t: logit(v) for t, v in p.items()},
                "calibrated in the event's own component": {t: logit(v) - cf[comp[t]] for t, v in p.items()}}
    for name, z in variants.items():
        print(scored(name, z, (w, y, s, ev_label)))


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "ask":
        ask(Path(args[0]), args[1], Path(args[2]), Path(args[3]))
    else:
        score(Path(args[0]), Path(args[1]), args[2])

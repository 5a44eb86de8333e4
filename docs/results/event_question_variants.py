"""Variants of the LLM's event question on a line-level target, for docs/pipeline.md ("Measured (2026-12-04, second
session)"). Evaluation only: ``score`` reads the target's labels to measure, nothing here feeds the product.

    python docs/results/event_question_variants.py ask RUN SYSTEM CACHE OUT.json   # starts the LLM service if needed
    python docs/results/event_question_variants.py score OUT.json RUN SYSTEM       # RUN's windows and severity's labels
    python docs/results/event_question_variants.py ensembles OUT.json RUN SYSTEM   # mean log-odds of several variants

``ask`` asks every event of SYSTEM (RUN's ``events/``) the default question, the system-fault question
(``event_fault_v1``), both framings (``event_routine_content_v1`` too) and the default question about three real
lines of the event instead of its template (the first, middle and last of its distinct messages), answers cached in
CACHE. ``score`` prints, per variant, the event ranking's ROC-AUC, the LLM view's and the fusion's F1 (mixture
cut; fusion = the view and severity both), and label-free alternatives to the two-component mixture's cut.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def ask(run: Path, system: str, cache_path: Path, out: Path) -> None:
    from fusionlog.cli import _llm_cfg
    from fusionlog.llm.cache import ProbabilityCache
    from fusionlog.llm.endpoint import llm_client
    from fusionlog.llm.judge import events_of, judge

    cfg, cache, evs = _llm_cfg(None), ProbabilityCache(cache_path), events_of(run, system)
    lines = pd.read_parquet(run / "lines" / f"system={system}", columns=["template_id", "content"])
    distinct = lines.drop_duplicates().groupby("template_id").content.apply(list).to_dict()
    res: dict[str, dict] = {}
    with llm_client(cfg) as client:
        def put(name: str, events: list, **kw: str) -> None:
            t, st = judge(client, system, events, cache=cache, concurrency=cfg.concurrency, **kw)
            res[name] = {"tid": t.column("template_id").to_pylist(), "p": t.column("p_yes").to_pylist(),
                         "q": t.column("p_counter").to_pylist()}
            print(name, st.line(), flush=True)
        put("template", evs, prompt="event_content_v1")
        put("fault", evs, prompt="event_fault_v1")
        put("two framings", evs, prompt="event_content_v1", counter="event_routine_content_v1")
        for k in range(3):
            picks = [dataclasses.replace(e, template=c[[0, len(c) // 2, len(c) - 1][k]]) if (c := distinct.get(
                e.template_id)) else e for e in evs]
            put(f"line {k}", picks, prompt="event_content_v1")
    out.write_text(json.dumps(res))


def line_windows(run: Path, system: str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, pd.Series]:
    """The one-line windows of RUN's SYSTEM with their event (``tid``), their labels, severity's flags, and each
    event's label (anomalous when most of its labeled lines are)."""
    w = pd.read_parquet(run / "windows" / f"system={system}")
    w = w[w.template_ids.map(len) == 1]
    w["tid"] = w.template_ids.map(lambda x: x[0])
    sev = pd.read_parquet(run / "modes" / "severity" / "scores" / f"system={system}").set_index("window_id").label
    y, s = w.label.to_numpy(int), w.window_id.map(sev).to_numpy(int)
    return w, y, s, w.groupby("tid").label.mean().gt(0.5).astype(int)


def score(answers: Path, run: Path, system: str) -> None:
    from sklearn.metrics import average_precision_score, f1_score, precision_recall_curve, roc_auc_score
    from sklearn.mixture import GaussianMixture

    from fusionlog.llm.judge import both_framings, logit, mixture_scores

    a = json.loads(answers.read_text())
    w, y, s, ev_label = line_windows(run, system)
    p = {k: dict(zip(v["tid"], v["p"], strict=True)) for k, v in a.items()}
    two = a["two framings"]
    p["two framings"] = {t: both_framings(x, q) for t, x, q in zip(two["tid"], two["p"], two["q"], strict=True)}
    lines = [k for k in p if k.startswith("line")]
    p["lines, mean log-odds"] = {t: 1 / (1 + np.exp(-np.mean([logit(p[k][t]) for k in lines]))) for t in p["line 0"]}

    def f1s(flag: dict) -> str:
        f = np.array([bool(flag.get(t, False)) for t in w.tid])
        return f"view F1 {f1_score(y, f):.3f}, fusion F1 {f1_score(y, f & (s == 1)):.3f} ({(f & (s == 1)).sum()} lines)"

    for name, m in p.items():
        tids = [t for t in m if m[t] is not None]
        z = np.array([logit(m[t]) for t in tids])[:, None]
        ranked = w.tid.map(m).to_numpy(float) * s
        pr, rc, _ = precision_recall_curve(y, ranked)
        print(f"{name}: event ROC-AUC {roc_auc_score(ev_label[tids], z.ravel()):.3f}, "
              f"{f1s(dict(zip(tids, np.array(mixture_scores([m[t] for t in tids])) >= 0.5, strict=True)))}, "
              f"PR-AUC on severe lines {average_precision_score(y, ranked):.3f}, "
              f"oracle best F1 {np.nanmax(2 * pr * rc / np.maximum(pr + rc, 1e-12)):.3f}")
        for k in (3, 4):
            gm = GaussianMixture(k, random_state=0).fit(z)
            top = gm.predict(z) == np.argmax(gm.means_.ravel())
            print(f"  top of {k} components: {f1s(dict(zip(tids, top, strict=True)))}")
        severe = [t for t in tids if t in set(w.tid[s == 1])]
        mix = mixture_scores([m[t] for t in severe])
        print(f"  two components over the severe events: {f1s(dict(zip(severe, np.array(mix) >= 0.5, strict=True)))}")


def ensembles(answers: Path, run: Path, system: str) -> None:
    """Self-consistency across the questions asked: per event, the mean log-odds of several variants (the routine
    framing negated); each scored by the event ROC-AUC, the view's and the fusion's F1 at the mixture's cut, and the
    PR-AUC and oracle best F1 of the severe lines ranked by it."""
    from fusionlog.llm.judge import logit

    a = json.loads(answers.read_text())
    w, y, s, ev_label = line_windows(run, system)
    p = {k: dict(zip(v["tid"], v["p"], strict=True)) for k, v in a.items()}
    routine = dict(zip(a["two framings"]["tid"], a["two framings"]["q"], strict=True))
    tids = [t for t in p["template"] if p["template"][t] is not None]
    lines = ["line 0", "line 1", "line 2"]
    sets = {"template": (["template"], False), "template, fault": (["template", "fault"], False),
            "template, fault, not routine": (["template", "fault"], True),
            "template, fault, three lines": (["template", "fault", *lines], False)}
    for name, (keys, negated) in sets.items():
        z = {t: np.mean([logit(p[k][t]) for k in keys] + ([-logit(routine[t])] if negated else [])) for t in tids}
        print(scored(name, z, (w, y, s, ev_label)))


def scored(name: str, z: dict[int, float], windows: tuple) -> str:
    """One line on event log-odds ``z`` (event -> value) over the windows of :func:`line_windows`: the event
    ranking's ROC-AUC, the view's and the fusion's F1 at the two-component mixture's cut (fusion = the view and
    severity both), and the PR-AUC and oracle best F1 of the severe lines ranked by ``z``."""
    from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

    from fusionlog.evaluate.metrics import best_f1
    from fusionlog.llm.judge import mixture_scores

    w, y, s, ev_label = windows
    tids = sorted(z)
    post = mixture_scores([1 / (1 + np.exp(-z[t])) for t in tids])
    flag = dict(zip(tids, np.array(post) >= 0.5, strict=True))
    f = np.array([bool(flag.get(t, False)) for t in w.tid])
    ranked = w.tid.map(z).to_numpy(float)
    ranked = np.where(s == 1, ranked, ranked.min() - 1)
    both, oracle = f & (s == 1), best_f1(y, ranked)[0]
    return (f"{name}: event ROC-AUC {roc_auc_score(ev_label[tids], [z[t] for t in tids]):.3f}, view F1 "
            f"{f1_score(y, f):.3f} ({f.sum()} lines), fusion F1 {f1_score(y, both):.3f} ({both.sum()} lines), severe "
            f"lines ranked: PR-AUC {average_precision_score(y, ranked):.3f}, oracle best F1 {oracle:.3f}")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "ask":
        ask(Path(args[0]), args[1], Path(args[2]), Path(args[3]))
    elif cmd == "ensembles":
        ensembles(Path(args[0]), Path(args[1]), args[2])
    else:
        score(Path(args[0]), Path(args[1]), args[2])

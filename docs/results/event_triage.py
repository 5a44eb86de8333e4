"""The LLM's triage of the events its yes/no question calls failures (``fusionlog.llm.triage``: the system's fault,
a user's or client's problem, or routine), asked in 1, 3 and 6 orders of the kinds (6, every order, is the product's
default), and what it does to the LLM view and the fusion on a line-level target. Evaluation only: ``score`` reads
the target's labels; ``orders`` reads none.

    python docs/results/event_triage.py ask RUN SYSTEM OUT.json   # starts the LLM service if needed
    python docs/results/event_triage.py score OUT.json RUN SYSTEM   # RUN's windows, event scores, severity
    python docs/results/event_triage.py orders RUN SYSTEM   # per order of the kinds, from RUN's cache

``ask`` triages the events in the upper group of RUN's yes/no question (``event_scores/``), as the judge stage does,
with the answers cached in RUN's LLM cache. ``orders`` reads those cached answers and prints, per order of the
kinds, the mean share of the system's fault among the two kinds of failure before and after the content-free
calibration, and how many events that order alone would keep: the order bias, measured without labels.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def ask(run: Path, system: str, out: Path, orders: tuple[int, ...] = (1, 3, 6)) -> None:
    import contextlib
    import functools

    from fusionlog.cli import _llm_cfg
    from fusionlog.llm.cache import ProbabilityCache
    from fusionlog.llm.endpoint import llm_client, model_name
    from fusionlog.llm.judge import events_of
    from fusionlog.llm.triage import triage

    cfg, cache = _llm_cfg(None), ProbabilityCache(run / "llm_cache.sqlite")
    upper = set(pd.read_parquet(run / "event_scores" / f"system={system}").query("score >= 0.5").template_id)
    evs = [e for e in events_of(run, system) if e.template_id in upper]
    res = {}
    with contextlib.ExitStack() as stack:  # the service starts only if an answer is not cached
        connect = functools.cache(lambda: stack.enter_context(llm_client(cfg)))
        for n in orders:
            t, st = triage(connect, system, evs, cache=cache, concurrency=cfg.concurrency, model=model_name(cfg),
                           orders=n)
            res[str(n)] = t.to_pydict()
            print(f"{n} orders: {st.line()}", flush=True)
    out.write_text(json.dumps(res))


def score(answers: Path, run: Path, system: str) -> None:
    from sklearn.metrics import average_precision_score, f1_score

    from fusionlog.evaluate.metrics import best_f1

    sys.path.insert(0, str(Path(__file__).parent))
    from event_question_variants import line_windows

    w, y, s, ev_label = line_windows(run, system)
    es = pd.read_parquet(run / "event_scores" / f"system={system}").set_index("template_id").score
    view = w.tid.map(es).to_numpy(float) >= 0.5
    both = view & (s == 1)
    print(f"yes/no question alone: view F1 {f1_score(y, view):.3f} ({view.sum()} lines), fusion F1 "
          f"{f1_score(y, both):.3f} ({both.sum()} lines)")
    for n, t in json.loads(answers.read_text()).items():
        share = {k: v for k, v in zip(t["template_id"], t["system_share"], strict=True) if v is not None}
        sh = w.tid.map(share).to_numpy(float)
        kept = view & ~(sh < 0.5)  # not triaged (no answer): kept
        fused = kept & (s == 1)
        ranked = np.where(both, np.nan_to_num(sh, nan=1.0), -1.0)
        systems = sum(v >= 0.5 for v in share.values())
        print(f"{n} orders: {systems} of {len(share)} events the system's; view F1 {f1_score(y, kept):.3f} "
              f"({kept.sum()} lines), fusion F1 {f1_score(y, fused):.3f} ({fused.sum()} lines); the fusion's lines "
              f"ranked by system share: PR-AUC {average_precision_score(y, ranked):.3f}, oracle best F1 "
              f"{best_f1(y, ranked)[0]:.3f}")


def order_bias(run: Path, system: str) -> None:
    from fusionlog.cli import _llm_cfg
    from fusionlog.llm.cache import ProbabilityCache
    from fusionlog.llm.endpoint import model_name
    from fusionlog.llm.judge import CONTENT_FREE, Event, event_key, events_of
    from fusionlog.llm.label import describe
    from fusionlog.llm.prompt import load_prompt
    from fusionlog.llm.triage import ORDERS, calibrated, debiased

    cache, model = ProbabilityCache(run / "llm_cache.sqlite"), model_name(_llm_cfg(None))
    version, desc = load_prompt("event_triage_v1").version, describe(system)
    upper = set(pd.read_parquet(run / "event_scores" / f"system={system}").query("score >= 0.5").template_id)
    evs = [e for e in events_of(run, system) if e.template_id in upper]
    free = [Event(-1 - i, text) for i, text in enumerate(CONTENT_FREE)]

    def answer(ev: Event, order: tuple[str, ...]) -> dict[str, float]:
        hit = cache.get_text(model, f"{version}:{'-'.join(order)}", event_key(desc, ev))
        if hit is None:
            raise SystemExit(f"{ev.template_id} not cached in order {'-'.join(order)}: run `ask` first")
        return json.loads(hit)

    def share(a: dict[str, float]) -> float:
        return a["system"] / (a["system"] + a["user"])

    for o in ORDERS:
        prior = debiased([answer(e, o) for e in free])
        raw = [answer(e, o) for e in evs]
        cal = [calibrated(a, prior) for a in raw]
        first = "system" if o.index("system") < o.index("user") else "user"
        print(f"{'-'.join(o):22s} {first}'s kind first: mean system share {np.mean([share(a) for a in raw]):.3f} "
              f"raw, {np.mean([share(a) for a in cal]):.3f} calibrated; {sum(share(a) >= 0.5 for a in cal)} of "
              f"{len(evs)} events kept in this order alone")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "ask":
        ask(Path(args[0]), args[1], Path(args[2]))
    elif cmd == "orders":
        order_bias(Path(args[0]), args[1])
    else:
        score(Path(args[0]), Path(args[1]), args[2])

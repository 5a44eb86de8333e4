"""``fusionlog bench judge``: event questions per second of the LLM service (the judge stage's one-token yes/no
questions) for several KV-cache block sizes, the first the baseline, on the same events of one system, and how far
each setting's P(yes) lies from the baseline's (prefix caching must change the speed, not the answers)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fusionlog.config import LLMConfig
from fusionlog.llm.endpoint import llm_client
from fusionlog.llm.judge import CONTENT_FREE, events_of, judge

console = Console(width=140)


def run(run_dir: Path, system: str, cfg: LLMConfig, n: int, block_sizes: list[int], out: Path | None,
        dtype: str | None = None) -> list[dict]:
    """Ask the first ``n`` events of ``system`` (``run_dir`` has its ``events/``) under each block size, no cache;
    ``dtype`` overrides the engine's (``auto``: float32 on CPUs, bfloat16 on GPUs)."""
    from fusionlog.llm.serve import engine_dtype

    events = events_of(run_dir, system)[:n]
    if not events:
        raise ValueError(f"no events of {system} in {run_dir}: run the pipeline up to the events stage first")
    serve = cfg.serve.model_copy(update={"dtype": dtype}) if dtype else cfg.serve
    used = engine_dtype(serve.dtype, serve.accelerator)
    rows, base = [], None
    for b in block_sizes:
        c = cfg.model_copy(update={"serve": serve.model_copy(update={"block_size": b})})
        with llm_client(c) as client:
            t0 = time.perf_counter()
            table, st = judge(client, system, events, prompt=cfg.event_prompt, cache=None,
                              concurrency=cfg.concurrency)
            seconds = time.perf_counter() - t0
        p = [x if x is not None else float("nan") for x in table.column("p_yes").to_pylist()]
        base = base or p
        diff = max((abs(a - b) for a, b in zip(p, base, strict=True)), default=0.0)
        asked = st.asked + len(CONTENT_FREE)
        rows.append({"block_size": b, "dtype": used,
                     "events": len(events), "answered": sum(x == x for x in p), "questions": asked,
                     "seconds": seconds, "questions_per_s": asked / seconds, "max_abs_diff_p_yes": diff,
                     "baseline": b == block_sizes[0]})
    t = Table(title=f"Event questions, {system}, {len(events)} events (+{len(CONTENT_FREE)} content-free), "
                    f"concurrency {cfg.concurrency}, prompt {cfg.event_prompt}")
    for col in ("block size", "dtype", "answered", "questions", "seconds", "questions/s", "speed-up",
                "max |ΔP(yes)| vs baseline"):
        t.add_column(col, justify="right")
    for x in rows:
        t.add_row(f"{x['block_size']}{' (baseline)' if x['baseline'] else ''}", x["dtype"], str(x["answered"]),
                  str(x["questions"]),
                  f"{x['seconds']:.1f}", f"{x['questions_per_s']:.3f}",
                  f"{rows[0]['seconds'] / x['seconds']:.2f}x", f"{x['max_abs_diff_p_yes']:.2e}")
    console.print(t)
    if out:
        out.write_text(json.dumps(rows, indent=2))
    return rows

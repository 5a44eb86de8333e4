"""``fusionlog bench llm``: labeling throughput of the LLM service (windows/s, calls/s) at concurrency 1 and
8, for 1 and 2 replicas, cold and with a warm cache, beside the kNN vote over the same retrieved neighbours;
``fusionlog bench llm-quality``: accuracy/F1 zero-shot, few-shot (RAG) and kNN vote on real windows."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fusionlog.config import LLMConfig
from fusionlog.llm.cache import VerdictCache
from fusionlog.llm.endpoint import llm_client
from fusionlog.llm.knowledge import KnowledgeBase, build_kb, knn_vote
from fusionlog.llm.label import Labeler, describe
from fusionlog.llm.quality import injection_check, label_quality
from fusionlog.llm.windows import labeled_items

console = Console(width=140)


def speed(run: Path, system: str, cfg: LLMConfig, n: int, replicas: list[int], concurrency: list[int]) -> list[dict]:
    """Label the same ``n`` distinct test windows per setting (few-shot, fresh cache, then a warm one)."""
    kb = KnowledgeBase(run)
    build_kb(run, system, kb, cfg.max_window_chars)
    windows = [it.window for it in labeled_items(run, system, "test")[:n]]
    rows = []
    t0 = time.perf_counter()
    for w in windows:
        knn_vote(kb.search(w.vector, cfg.k_examples, system))
    knn_s = time.perf_counter() - t0
    for r in replicas:
        c = cfg.model_copy(update={"serve": cfg.serve.model_copy(update={"num_replicas": r})})
        with llm_client(c) as client, tempfile.TemporaryDirectory() as tmp:
            for conc in concurrency:
                cache = VerdictCache(Path(tmp) / f"c{conc}.sqlite")
                lab = Labeler.from_config(client, cfg, describe(system), cache=cache, kb=kb, concurrency=conc,
                                          kb_system=system, signature_mode="ordered")
                for temp in ("cold", "warm cache"):
                    _, st = lab.label(windows)
                    rows.append({"replicas": r, "concurrency": conc, "cache": temp, "windows": st.windows,
                                 "calls": st.llm_calls, "abstained": st.abstained, "seconds": st.seconds,
                                 "windows_per_s": st.windows / st.seconds, "calls_per_s": st.llm_calls / st.seconds})
    rows.append({"replicas": 0, "concurrency": 1, "cache": "kNN vote (no LLM)", "windows": len(windows), "calls": 0,
                 "abstained": 0, "seconds": knn_s, "windows_per_s": len(windows) / knn_s, "calls_per_s": 0.0})
    t = Table(title=f"LLM labeling throughput, {system}, {len(windows)} distinct windows, k={cfg.k_examples}")
    for col in ("replicas", "concurrency", "cache", "windows", "calls", "abstained", "seconds", "windows/s", "calls/s"):
        t.add_column(col, justify="right")
    for x in rows:
        t.add_row(str(x["replicas"]), str(x["concurrency"]), x["cache"], str(x["windows"]), str(x["calls"]),
                  str(x["abstained"]), f"{x['seconds']:.1f}", f"{x['windows_per_s']:.2f}", f"{x['calls_per_s']:.2f}")
    console.print(t)
    return rows


def quality(run: Path, systems: list[str], cfg: LLMConfig, n: int, out: Path | None,
            injection_only: bool = False) -> list[dict]:
    res = []
    with llm_client(cfg) as client:
        for s in systems:
            if injection_only:
                res.append(injection_check(run, s, client, cfg, n=min(n, 20)))
                console.print(res[-1])
            else:
                res.append(label_quality(run, s, client, cfg, n=n))
    if injection_only:
        if out:
            out.write_text(json.dumps(res, indent=2))
        return res
    t = Table(title=f"LLM label quality ({cfg.serve.model_path or cfg.model or 'default model'})")
    for col in ("system", "items (anom.)", "in KB", "method", "accuracy", "precision", "recall", "F1", "abstained"):
        t.add_column(col, justify="right")
    for r in res:
        for m in ("zero_shot", "few_shot", "knn_vote"):
            x = r[m]
            t.add_row(r["system"], f"{r['items']} ({r['anomalous']})", str(r["items_in_kb"]), m, f"{x['accuracy']:.3f}",
                      f"{x['precision']:.3f}", f"{x['recall']:.3f}", f"{x['f1']:.3f}", str(x.get("abstained", "-")))
    console.print(t)
    if out:
        out.write_text(json.dumps(res, indent=2, default=float))
    return res

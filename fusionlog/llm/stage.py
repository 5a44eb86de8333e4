"""``fusionlog label``: the LLM labels a system's windows (all, or the router's proprietary ones) through the
configured endpoint, with few-shot examples from labeled systems; writes ``llm_labels/system=<s>/``."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fusionlog.config import LLMConfig
from fusionlog.io import atomic_dir
from fusionlog.llm.cache import VerdictCache, signature
from fusionlog.llm.client import ChatClient
from fusionlog.llm.knowledge import KnowledgeBase
from fusionlog.llm.label import Labeler, LabelStats, Window
from fusionlog.llm.prompt import load_prompt
from fusionlog.llm.quality import build_kb, describe
from fusionlog.llm.windows import WindowMaker
from fusionlog.train.data import general_window_ids, read_windows

LABELS = pa.schema([("window_id", pa.string()), ("signature", pa.string()), ("label", pa.string()),
                    ("confidence", pa.float32()), ("reason", pa.string()), ("abstained", pa.bool_())])


def windows_of(run: Path, system: str, only_proprietary: bool) -> list[Window]:
    """The system's windows as template texts + window vectors (labels are not read)."""
    t = read_windows(run, system, ["window_id", "template_ids"])
    if only_proprietary:
        general = general_window_ids(run, system)
        t = t.filter(pc.invert(pc.is_in(t["window_id"], value_set=pa.array(sorted(general), pa.string()))))
    make = WindowMaker(run, system)
    return [make(wid, ids) for wid, ids in zip(t["window_id"].to_pylist(), t["template_ids"].to_pylist(), strict=True)]


def label_system(run: Path, system: str, client: ChatClient, cfg: LLMConfig, kb_systems: list[str],
                 only_proprietary: bool = False) -> LabelStats:
    """Label ``system``'s windows (one call per distinct signature, cached in ``<run>/llm_cache.sqlite``)."""
    run = Path(run)
    kb = KnowledgeBase(run)
    for s in kb_systems:
        build_kb(run, s, kb, cfg.max_window_chars)
    windows = windows_of(run, system, only_proprietary)
    lab = Labeler(client, load_prompt(cfg.prompt), describe(system), cache=VerdictCache(run / "llm_cache.sqlite"),
                  kb=kb if kb_systems else None, k=cfg.k_examples if kb_systems else 0, concurrency=cfg.concurrency,
                  signature_mode=cfg.signature, max_window_chars=cfg.max_window_chars,
                  balanced=cfg.balanced_examples)
    verdicts, stats = lab.label(windows)
    rows = [(w.window_id, signature(w.template_ids, cfg.signature), verdicts[w.window_id]) for w in windows]
    table = pa.table({
        "window_id": [r[0] for r in rows], "signature": [r[1] for r in rows],
        "label": [r[2].label if r[2] else None for r in rows],
        "confidence": pa.array([r[2].confidence if r[2] else None for r in rows], pa.float32()),
        "reason": [r[2].reason if r[2] else None for r in rows], "abstained": [r[2] is None for r in rows],
    }, schema=LABELS)
    with atomic_dir(run / "llm_labels" / f"system={system}") as tmp:
        tmp.mkdir()
        pq.write_table(table, tmp / "part-0.parquet")
    return stats

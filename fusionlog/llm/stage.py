"""``fusionlog label``: the LLM labels a system's windows (all, or the router's proprietary ones) through the
configured endpoint, with few-shot examples from labeled systems; writes ``llm_labels/system=<s>/``."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from fusionlog.config import LLMConfig
from fusionlog.llm.cache import VerdictCache, signature
from fusionlog.llm.client import ChatClient
from fusionlog.llm.knowledge import KnowledgeBase, build_kb
from fusionlog.llm.label import Labeler, LabelStats, Window, describe
from fusionlog.llm.windows import WindowMaker
from fusionlog.rundir import llm_cache_file, verdict_rows, write_verdicts
from fusionlog.train.data import general_window_ids, read_windows


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
    lab = Labeler.from_config(client, cfg, describe(system), cache=VerdictCache(llm_cache_file(run)),
                              kb=kb if kb_systems else None, k=cfg.k_examples if kb_systems else 0)
    verdicts, stats = lab.label(windows)
    sigs = {w.window_id: signature(w.template_ids, cfg.signature) for w in windows}
    write_verdicts(run, system, verdict_rows(verdicts, "label", sigs))  # the rows of other purposes stay
    return stats

"""Single-process Drain3 baseline of the ingest benchmark.

Reads a raw archive (plain or gzip) line by line, splits the header with the system's log format and
feeds each line's content to ``drain3.TemplateMiner.add_log_message`` one at a time, with the same
masking rules and Drain parameters as the system's YAML (no persistence, no profiling). This is what
a straightforward Drain3 ingest does; the benchmark prints it beside the pipeline's own figures.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil
from drain3 import TemplateMiner
from drain3.masking import MaskingInstruction
from drain3.template_miner_config import TemplateMinerConfig

from fusionlog.config import SystemConfig, load_system
from fusionlog.ingest.header import format_regex

T = TypeVar("T")
PARAM = "<*>"


class PeakRss:
    """Samples this process's resident memory in a background thread; ``peak_mb`` is the maximum seen."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self._proc = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)
        self.peak_bytes = 0

    def _sample(self) -> None:
        self.peak_bytes = max(self.peak_bytes, self._proc.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> PeakRss:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def peak_mb(self) -> float:
        return round(self.peak_bytes / 2**20, 1)


def measure_peak_rss(
    fn: Callable[..., T], *args: Any, interval_s: float = 0.2, **kwargs: Any
) -> tuple[T, float]:
    """Run ``fn(*args, **kwargs)``; returns its result and the process's peak RSS in MiB meanwhile."""
    with PeakRss(interval_s) as rss:
        result = fn(*args, **kwargs)
    return result, rss.peak_mb


def drain3_miner(cfg: SystemConfig) -> TemplateMiner:
    """A Drain3 ``TemplateMiner`` with the system's masks and Drain parameters; no persistence."""
    tmc = TemplateMinerConfig()
    tmc.profiling_enabled = False
    tmc.snapshot_interval_minutes = 10**9
    tmc.mask_prefix = ""  # drain3 writes prefix + mask_with + suffix: our replacements are complete
    tmc.mask_suffix = ""
    tmc.masking_instructions = [MaskingInstruction(r.pattern, r.replacement) for r in cfg.masks]
    tmc.drain_depth = cfg.drain.depth
    tmc.drain_sim_th = cfg.drain.sim_th
    tmc.drain_max_children = cfg.drain.max_children
    tmc.drain_max_clusters = cfg.drain.max_clusters
    tmc.parametrize_numeric_tokens = cfg.drain.parametrize_numeric_tokens
    miner = TemplateMiner(persistence_handler=None, config=tmc)
    miner.drain.param_str = PARAM  # with an empty prefix/suffix drain3 would use "*"; nothing mined yet
    return miner


def _lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
    with gzip.open(path, "rb") if gz else open(path, "rb") as fh:
        yield from fh


def run_drain3_baseline(path: Path, system: str) -> dict[str, Any]:
    """Mine templates of ``path`` with plain Drain3 in this process; returns counts, rate and peak RSS."""
    cfg = load_system(system)
    rx = format_regex(cfg.log_format)
    miner = drain3_miner(cfg)
    add = miner.add_log_message
    n = unmatched = 0
    with PeakRss() as rss:
        t0 = time.perf_counter()
        for raw in _lines(Path(path)):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            n += 1
            m = rx.match(line)
            if m is None:
                unmatched += 1
                continue
            add(m.group("Content"))
        secs = time.perf_counter() - t0
    return {
        "system": system,
        "path": str(path),
        "lines": n,
        "unmatched": unmatched,
        "seconds": round(secs, 3),
        "lines_per_s": round(n / secs) if secs > 0 else None,
        "n_templates": len(miner.drain.clusters),
        "peak_rss_mb": rss.peak_mb,
    }

"""The single-process Drain3 baseline of the ingest benchmark, on real HDFS lines."""

from __future__ import annotations

import time
from pathlib import Path

from fusionlog.bench.drain3_baseline import drain3_miner, measure_peak_rss, run_drain3_baseline
from fusionlog.config import load_system

HDFS_20K = Path(__file__).resolve().parents[1] / "data" / "HDFS" / "HDFS_20000.log.gz"


def test_baseline_on_real_hdfs() -> None:
    r = run_drain3_baseline(HDFS_20K, "HDFS")
    assert r["lines"] == 20_000 and r["unmatched"] == 0
    assert 10 <= r["n_templates"] <= 60  # ~30 real event types; block ids and IPs are masked
    assert r["lines_per_s"] > 0 and r["seconds"] > 0
    assert 10 < r["peak_rss_mb"] < 4096


def test_miner_uses_the_system_masks_and_star_params() -> None:
    miner = drain3_miner(load_system("HDFS"))
    miner.add_log_message(
        "Receiving block blk_-1608999687919862906 src: /10.250.19.102:54106 dest: /10.250.19.102:50010"
    )
    out = miner.add_log_message(
        "Receiving block blk_7503483334202473044 src: /10.251.215.16:55695 dest: /10.1.2.3:50010"
    )
    assert out["template_mined"] == "Receiving block <*> src: /<*> dest: /<*>"
    assert out["cluster_count"] == 1


def test_measure_peak_rss() -> None:
    def grow() -> int:
        block = bytes(range(256)) * (2**18)  # 64 MiB, touched
        time.sleep(0.5)
        return len(block)

    n, peak = measure_peak_rss(grow)
    assert n == 64 * 2**20 and peak > 64

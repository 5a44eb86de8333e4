"""``fusionlog bench backfill`` on two small sizes, with the LLM played by a TEST DOUBLE of the OpenAI-compatible
endpoint (tests/test_pipeline.py's keyword rule; its labels are never reported as the LLM's): every stage is timed,
sampled and sized, the LLM's questions are counted from the judge's summary, and the runs are removed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fusionlog.bench.backfill import STAGES, run
from tests.fake_openai import FakeOpenAIEndpoint
from tests.test_pipeline import keyword_double

pytestmark = pytest.mark.slow


def test_backfill_measures_every_stage_of_the_whole_transfer(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with FakeOpenAIEndpoint(keyword_double) as fake:
        llm = {"backend": "openai", "base_url": fake.url, "model": "test-double", "retries": 1, "backoff_s": 0.01}
        rows = run([2000, 4000], ["HDFS"], workdir=tmp_path, out=tmp_path / "backfill.json", llm=llm,
                   timeout_s=1200)
    printed = capsys.readouterr().out
    assert [r["lines"] for r in rows] == [2000, 4000] and all(r["system"] == "HDFS" for r in rows)
    for r in rows:
        assert r["parsed_lines"] == r["lines"] and r["windows"] > 0 and r["templates"] > 0
        assert 0 < r["anomalous_windows"] < r["windows"]  # the synthetic blocks' labels were read
        assert set(r["stages"]) == set(STAGES)
        assert all(s["seconds"] >= 0 and s["disk_mb"] > 0 for s in r["stages"].values())
        assert r["stages"]["ingest"]["peak_rss_mb"] > 100  # the Spark JVM at least
        assert r["peak_rss_mb"] == max(s["peak_rss_mb"] for s in r["stages"].values())
        calls = r["llm_calls"]  # one question per distinct event of the target, and of the source (BGL_2k)
        assert calls["target_events"] == r["templates"] > 0
        assert calls["source_events"] > 0 and 0 < r["llm_share"] < 1
        assert sum(s["seconds"] for s in r["stages"].values()) <= r["wall_s"]
    assert rows[1]["windows"] > rows[0]["windows"]  # twice the lines, more blocks
    assert not list(tmp_path.glob("backfill_HDFS_*.run"))  # the runs are removed (no --keep)
    assert json.loads((tmp_path / "backfill.json").read_text())["rows"][1]["lines"] == 4000
    assert "backfill: BGL -> synthetic HDFS" in printed and "LLM share of wall" in printed
    assert "HDFS 2,000 -> 4,000 lines (x2): wall x" in printed

"""Template miner: distinct-message mining, JSON state round trip, refusal of foreign state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fusionlog.config import DrainConfig, MaskRule
from fusionlog.ingest.header import format_regex
from fusionlog.ingest.mask import Masker
from fusionlog.ingest.templates import TemplateMiner


def test_format_regex_and_masker() -> None:
    rx = format_regex(r"<Date> <Time> \[<Level>\] <Content>")
    m = rx.match("2024-01-01 10:00:00  [INFO] user 42 logged in from 10.0.0.1:22")
    assert m and m["Level"] == "INFO" and m["Content"] == "user 42 logged in from 10.0.0.1:22"
    masker = Masker([MaskRule(name="ip", pattern=r"(\d+\.){3}\d+"), MaskRule(name="num", pattern=r"^\d+$"),
                     MaskRule(name="sec", pattern=r"<\d+ sec", scope="line")], cache_size=3)
    assert masker.mask("user 42  logged in from 10.0.0.1:22") == "user <*> logged in from <*>:22"
    assert masker.mask("lifetime <1 sec") == "lifetime <*>"
    for i in range(10):  # the cache stays bounded
        masker.mask(f"tok{i} x{i}")
    assert len(masker._cache) <= 3


def test_state_round_trip_keeps_ids(tmp_path: Path) -> None:
    cfg = DrainConfig(depth=4, sim_th=0.5)
    a = TemplateMiner(cfg)
    ids_a = a.add_all([("open file <*> ok", 3), ("close file <*> ok", 2), ("disk <*> failed at <*>", 1)])
    a.save(tmp_path / "s.json")
    b = TemplateMiner.load(tmp_path / "s.json", cfg)
    assert b.templates() == a.templates()
    assert b.add("open file <*> ok") == ids_a["open file <*> ok"]
    assert b.add("brand new message here") not in ids_a.values()
    assert b.add("disk <*> failed at <*>") == ids_a["disk <*> failed at <*>"]
    assert json.loads((tmp_path / "s.json").read_text())["version"] == 1


def test_foreign_or_broken_state_is_refused(tmp_path: Path) -> None:
    a = TemplateMiner(DrainConfig(sim_th=0.5))
    a.add("x y z")
    a.save(tmp_path / "s.json")
    with pytest.raises(ValueError, match="different Drain settings"):
        TemplateMiner.load(tmp_path / "s.json", DrainConfig(sim_th=0.7))
    (tmp_path / "bad.json").write_text('{"version": 1, "drain": ' + json.dumps(DrainConfig().model_dump()) + "}")
    with pytest.raises(ValueError, match="malformed template state"):
        TemplateMiner.load(tmp_path / "bad.json", DrainConfig())
    (tmp_path / "junk.json").write_text('{"py/reduce": [')
    with pytest.raises(ValueError, match="cannot read template state"):
        TemplateMiner.load(tmp_path / "junk.json", DrainConfig())


def test_run_state_is_dropped_when_drain_settings_change(tmp_path: Path) -> None:
    from fusionlog.config import load_system
    from fusionlog.ingest.stage import IngestResult, _load_miner

    hdfs = load_system("HDFS")
    other = TemplateMiner(DrainConfig(sim_th=0.99))
    other.add("a b c")
    other.save(tmp_path / "own.json")
    res = IngestResult("HDFS", tmp_path)
    miner = _load_miner(None, tmp_path / "own.json", hdfs, res)
    assert miner.templates() == {} and "not reused" in res.notes[0]
    with pytest.raises(ValueError, match="different Drain settings"):
        _load_miner(tmp_path / "own.json", tmp_path / "x.json", hdfs, res)
    with pytest.raises(FileNotFoundError, match="template state not found"):
        _load_miner(tmp_path / "missing.json", tmp_path / "x.json", hdfs, res)

"""The parsing benchmark on real loghub 2k logs, and the 16 system configs against their samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fusionlog.bench.parse import SYSTEMS, as_wildcards, placeholders, read_lines, read_truth, run
from fusionlog.config import load_system
from fusionlog.ingest.parse import LineParser

REPO = Path(__file__).resolve().parents[1]

# GA measured with the shipped configs (docs/parsing.md), minus a margin of 0.02
FLOORS = {"Proxifier": 0.98, "HealthApp": 0.98, "OpenSSH": 0.97}


@pytest.fixture(autouse=True)
def _repo_conf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSIONLOG_CONF", str(REPO / "conf"))


def test_bench_beats_plain_drain3(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    rows = run(list(FLOORS), data, out)
    assert [r["system"] for r in rows] == list(FLOORS)
    for r in rows:
        assert r["lines"] == 2000 and r["unparsed"] == 0, r
        assert r["ga_ours"] >= r["ga_drain3"], r
        assert r["ga_ours"] >= FLOORS[r["system"]], r
        assert 0.0 <= r["pa_ours"] <= 1.0 and 0.0 <= r["pa_drain3"] <= 1.0
    saved = json.loads(out.read_text())
    assert saved["systems"] == rows
    assert saved["mean"]["ga_ours"] == pytest.approx(sum(r["ga_ours"] for r in rows) / len(rows))


@pytest.mark.parametrize("system", SYSTEMS)
def test_config_parses_every_sample_line(data: Path, system: str) -> None:
    """Every line matches the header, its Content is loghub's, and its timestamp parses."""
    folder = data / "loghub_2k" / system
    lines = read_lines(folder / f"{system}_2k.log.gz")
    truth = read_truth(folder / f"{system}_2k.log_structured_corrected.csv.gz")
    parser = LineParser(load_system(system))
    assert len(lines) == len(truth) == 2000
    for line, want in zip(lines, truth["Content"], strict=True):
        p = parser.parse(line)
        assert p is not None, line
        assert p.content.strip() == want.strip()  # loghub strips each line
        assert p.ts is not None, line


def test_named_placeholders_score_as_wildcards() -> None:
    names = placeholders(load_system("Proxifier"))
    assert {"<HOST>", "<PORT>", "<SIZE>", "<NUM>"} <= names
    assert as_wildcards("<HOST>:<PORT> close, <SIZE> sent <X>", names) == "<*>:<*> close, <*> sent <X>"

"""Synthetic archives (scale benchmarks): deterministic, exact, parseable, consistent labels."""

from __future__ import annotations

import gzip
import re
from collections import defaultdict
from pathlib import Path

import pytest

from fusionlog.bench.synth import hdfs_template_regexes, synth
from fusionlog.config import load_system
from fusionlog.ingest.parse import LineParser

DATA = Path(__file__).resolve().parents[1] / "data"
BLOCK = re.compile(r"blk_-?\d+")


def _lines(path: Path) -> list[str]:
    with gzip.open(path, "rt") if path.name.endswith(".gz") else open(path) as fh:
        return fh.read().splitlines()


def _sequences(name: str) -> set[tuple[int, ...]]:
    with gzip.open(DATA / "HDFS" / name, "rt") as fh:
        return {tuple(int(x) for x in line.strip().split(",", 1)[1].split()) for line in fh if line.strip()}


@pytest.fixture(scope="module")
def hdfs20k(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list[str], list[str]]:
    out = tmp_path_factory.mktemp("synth") / "hdfs.log"
    summary = synth("HDFS", 20_000, out, seed=7, anomaly_ratio=0.2, data_dir=DATA)
    labels = Path(summary["labels_path"]).read_text().split()
    return summary, _lines(out), labels


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    for name in ("a.log", "a.log.gz"):
        a = synth("HDFS", 5_000, tmp_path / "1" / name, seed=3, data_dir=DATA)
        b = synth("HDFS", 5_000, tmp_path / "2" / name, seed=3, data_dir=DATA)
        c = synth("HDFS", 5_000, tmp_path / "3" / name, seed=4, data_dir=DATA)
        assert Path(a["path"]).read_bytes() == Path(b["path"]).read_bytes()
        assert Path(a["labels_path"]).read_bytes() == Path(b["labels_path"]).read_bytes()
        assert Path(a["path"]).read_bytes() != Path(c["path"]).read_bytes()
    g1 = synth("BGL", 3_000, tmp_path / "g1.log", seed=3, data_dir=DATA)
    g2 = synth("BGL", 3_000, tmp_path / "g2.log", seed=3, data_dir=DATA)
    g3 = synth("BGL", 3_000, tmp_path / "g3.log", seed=5, data_dir=DATA)
    assert Path(g1["path"]).read_bytes() == Path(g2["path"]).read_bytes() != Path(g3["path"]).read_bytes()


@pytest.mark.parametrize("n", [0, 1, 7, 2_345])
def test_exact_line_count(tmp_path: Path, n: int) -> None:
    s = synth("HDFS", n, tmp_path / "h.log", data_dir=DATA)
    assert s["lines"] == n and len(_lines(tmp_path / "h.log")) == n
    g = synth("OpenStack", n, tmp_path / "o.log.gz", data_dir=DATA)
    assert g["lines"] == n and len(_lines(tmp_path / "o.log.gz")) == n


def test_gz_and_plain_hold_the_same_text(tmp_path: Path) -> None:
    plain = synth("HDFS", 4_000, tmp_path / "p.log", seed=1, data_dir=DATA)
    gz = synth("HDFS", 4_000, tmp_path / "p.log.gz", seed=1, data_dir=DATA)
    assert gz["gz"] and not plain["gz"]
    raw = Path(plain["path"]).read_bytes()
    assert gzip.decompress(Path(gz["path"]).read_bytes()) == raw
    assert gz["raw_bytes"] == plain["bytes"] == len(raw) and gz["bytes"] < plain["bytes"]
    forced = synth("HDFS", 4_000, tmp_path / "forced.log", gz=True, seed=1, data_dir=DATA)
    assert Path(forced["path"]).read_bytes()[:2] == b"\x1f\x8b"
    unforced = synth("HDFS", 4_000, tmp_path / "plain.log.gz", gz=False, seed=1, data_dir=DATA)
    assert Path(unforced["path"]).read_bytes() == raw
    assert not list(tmp_path.glob(".tmp-*"))


def test_hdfs_lines_parse_with_real_format(hdfs20k: tuple[dict, list[str], list[str]]) -> None:
    _, lines, _ = hdfs20k
    parser = LineParser(load_system("HDFS"))
    parsed = [parser.parse(line) for line in lines]
    assert all(p is not None for p in parsed)
    ts = [p.ts for p in parsed]  # type: ignore[union-attr]
    assert all(t is not None for t in ts) and ts == sorted(ts)  # type: ignore[type-var]
    assert all(p.level in ("INFO", "WARN") and p.component.startswith("dfs.") for p in parsed)  # type: ignore[union-attr]
    assert all(len(p.sessions) == 1 for p in parsed)  # type: ignore[union-attr]
    assert all(re.fullmatch(r"blk_-?\d{18,19}", p.sessions[0]) for p in parsed)  # type: ignore[union-attr]


def test_hdfs_blocks_replay_real_sequences(hdfs20k: tuple[dict, list[str], list[str]]) -> None:
    summary, lines, labels = hdfs20k
    rxs = hdfs_template_regexes(DATA)[:29]
    seqs: dict[str, list[int]] = defaultdict(list)
    for line in lines:
        content = line.split(": ", 1)[1]
        hits = [i + 1 for i, rx in enumerate(rxs) if rx.match(content)]
        assert len(hits) == 1, (line, hits)  # every line is exactly one real event type
        seqs[BLOCK.search(content).group(0)].append(hits[0])  # type: ignore[union-attr]
    assert summary["blocks"] == len(seqs) and summary["anomalous_blocks"] == len(labels)
    normal, abnormal = _sequences("hdfs_train.gz"), _sequences("hdfs_test_abnormal.gz")
    foreign = [b for b, s in seqs.items() if tuple(s) not in normal | abnormal]
    assert len(foreign) <= 1  # only the last block may be cut to fit the line count
    assert all(tuple(seqs[b]) in abnormal for b in labels)
    assert (
        sum(tuple(s) in normal for b, s in seqs.items() if b not in set(labels))
        >= len(seqs) - len(labels) - 1
    )


def test_hdfs_labels_consistent_and_ratio(tmp_path: Path) -> None:
    s = synth("HDFS", 200_000, tmp_path / "big.log.gz", seed=11, anomaly_ratio=0.03, data_dir=DATA)
    assert s["labels_path"] == str(tmp_path / "big.log.gz.anomalous_blocks")
    labels = Path(s["labels_path"]).read_text().split()
    assert len(labels) == len(set(labels)) == s["anomalous_blocks"]
    blocks: set[str] = set()
    with gzip.open(tmp_path / "big.log.gz", "rt") as fh:
        for line in fh:
            blocks.update(BLOCK.findall(line))
    assert len(blocks) == s["blocks"] > 5_000
    assert set(labels) <= blocks
    assert abs(len(labels) / len(blocks) - 0.03) < 0.01


@pytest.mark.parametrize("system", ["BGL", "Thunderbird", "OpenStack"])
def test_other_systems_parse_with_increasing_time(tmp_path: Path, system: str) -> None:
    s = synth(system, 3_000, tmp_path / f"{system}.log", seed=2, data_dir=DATA)
    assert s["labels_path"] is None and not Path(f"{tmp_path / system}.log.anomalous_blocks").exists()
    parser = LineParser(load_system(system))
    parsed = [parser.parse(line) for line in _lines(tmp_path / f"{system}.log")]
    assert len(parsed) == 3_000 and all(p is not None for p in parsed)
    ts = [p.ts for p in parsed]  # type: ignore[union-attr]
    assert all(t is not None for t in ts) and ts == sorted(ts)  # type: ignore[type-var]
    real = [parser.parse(line) for line in _lines(DATA / "loghub_2k" / system / f"{system}_2k.log.gz")]
    assert {p.component for p in parsed} <= {r.component for r in real if r}  # type: ignore[union-attr]
    assert len({p.content for p in parsed}) > 1_000  # type: ignore[union-attr]  # variables are fresh


def test_unknown_system_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown system 'NoSuchSystem'"):
        synth("NoSuchSystem", 10, tmp_path / "x.log", data_dir=DATA)
    assert not list(tmp_path.iterdir())

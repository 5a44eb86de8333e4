"""The split reader on crafted bad input: every line is parsed or quarantined with a reason."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pytest

from fusionlog import contracts
from fusionlog.config import load_system
from fusionlog.ingest.parse import BatchParser
from fusionlog.ingest.read import parse_split, scan_split
from fusionlog.ingest.sources import InputError, Split, count_newlines, expand_inputs, plan_splits, with_line_bases
from fusionlog.ingest.templates import PARAM, TemplateMiner

GOOD = b"081109 203518 143 INFO dfs.DataNode$DataXceiver: Receiving block blk_-160 src: /10.0.0.1:1 dest: /10.0.0.2:2"


@pytest.fixture(scope="module")
def parser() -> BatchParser:
    return BatchParser(load_system("HDFS"))


def _two_passes(split: Split, parser: BatchParser, **kw) -> tuple[pa.Table, pa.Table]:
    """Pass 1 (scan), Drain over its distinct messages, pass 2 (lines): as the Spark stage does."""
    scan = pa.Table.from_batches(list(scan_split(split, parser, **kw)))
    distinct = scan.filter(pa.compute.equal(scan["kind"], "distinct")).to_pylist()
    miner = TemplateMiner(load_system("HDFS").drain)
    ids = {d["masked"]: miner.add(d["masked"], d["n"]) for d in sorted(distinct, key=lambda d: d["line_no"])}
    shape = {}
    for m, t in ids.items():
        toks = miner.template_of(t).split()
        shape[m] = (t, tuple(i for i, x in enumerate(toks) if PARAM in x), len(toks))
    lines = pa.Table.from_batches(list(parse_split(split, parser, shape, **kw)), schema=contracts.LINES)
    return scan, lines


def _read(path: Path, parser: BatchParser, **kw) -> tuple[pa.Table, dict]:
    gz = path.read_bytes()[:2] == b"\x1f\x8b"
    scan, lines = _two_passes(Split(0, str(path), 0, path.stat().st_size, gz), parser, **kw)
    stats = json.loads(scan.filter(pa.compute.equal(scan["kind"], "stats"))["stats"][0].as_py())
    assert stats["parsed"] == lines.num_rows  # both passes agree
    return (scan, lines), stats


def _kinds(t: tuple[pa.Table, pa.Table], kind: str) -> list[dict]:
    scan, lines = t
    if kind == "line":
        return lines.to_pylist()
    return scan.filter(pa.compute.equal(scan["kind"], kind)).to_pylist()


def test_crlf_bad_bytes_junk_and_empty_lines(tmp_path: Path, parser: BatchParser) -> None:
    raw = GOOD + b"\r\n" + b"not a log line\r\n" + GOOD.replace(b"Receiving", b"Rec\xff\xfeving") + b"\n\n" + GOOD
    f = tmp_path / "a.log"
    f.write_bytes(raw)
    t, st = _read(f, parser)
    lines, quar = _kinds(t, "line"), _kinds(t, "quarantine")
    assert st["read"] == 5 == st["parsed"] + st["quarantined"]
    assert [r["line_no"] for r in lines] == [1, 3, 5]
    assert not lines[0]["content"].endswith("\r")
    assert "\ufffd" in lines[1]["content"] and st["replaced_utf8"] == 1
    assert {(q["line_no"], q["reason"]) for q in quar} == {(2, "no_header_match"), (4, "empty_line")}
    assert quar[0]["raw"] == b"not a log line"


def test_invalid_utf8_can_be_quarantined(tmp_path: Path, parser: BatchParser) -> None:
    f = tmp_path / "b.log"
    f.write_bytes(GOOD + b"\n" + b"\xc3\x28 broken" + b"\n")
    t, st = _read(f, parser, on_invalid_utf8="quarantine")
    assert [(q["line_no"], q["reason"], q["raw"]) for q in _kinds(t, "quarantine")] == [
        (2, "invalid_utf8", b"\xc3\x28 broken")
    ]
    assert st["parsed"] == 1


def test_empty_file(tmp_path: Path, parser: BatchParser) -> None:
    f = tmp_path / "empty.log"
    f.write_bytes(b"")
    t, st = _read(f, parser)
    assert st["read"] == 0 and not _kinds(t, "line") and not _kinds(t, "quarantine")


def test_truncated_gzip_keeps_lines_and_quarantines_partial_line(tmp_path: Path, parser: BatchParser) -> None:
    body = b"\n".join([GOOD] * 3000) + b"\n"
    full = gzip.compress(body)
    f = tmp_path / "t.log.gz"
    f.write_bytes(full[: len(full) // 2])
    t, st = _read(f, parser)
    assert st["errors"] and "truncated" in st["errors"][0]
    quar = _kinds(t, "quarantine")
    assert len(quar) == 1 and quar[0]["reason"] == "truncated_gzip"
    assert GOOD.startswith(quar[0]["raw"])  # the partial last line, as bytes
    n = len(_kinds(t, "line"))
    assert 0 < n < 3000 and st["read"] == n + 1
    assert quar[0]["line_no"] == n + 1


def test_corrupt_and_multimember_gzip(tmp_path: Path, parser: BatchParser) -> None:
    f = tmp_path / "m.log.gz"
    f.write_bytes(gzip.compress(GOOD + b"\n") + gzip.compress(GOOD + b"\n" + GOOD))
    t, st = _read(f, parser)
    assert st["parsed"] == 3 and not st["errors"]
    bad = tmp_path / "c.log.gz"
    good = gzip.compress((GOOD + b"\n") * 50)
    bad.write_bytes(good[:20] + bytes(b ^ 0x5A for b in good[20:]))
    t, st = _read(bad, parser)
    assert st["errors"] and "corrupt gzip" in st["errors"][0]
    assert st["read"] == st["parsed"] + st["quarantined"]


def test_over_long_line(tmp_path: Path, parser: BatchParser) -> None:
    f = tmp_path / "long.log"
    f.write_bytes(GOOD + b"\n" + GOOD + b"x" * 5000 + b"\n" + GOOD + b"\n")
    t, st = _read(f, parser, max_line_bytes=1000)
    assert [(q["line_no"], q["reason"]) for q in _kinds(t, "quarantine")] == [(2, "line_too_long")]
    assert [r["line_no"] for r in _kinds(t, "line")] == [1, 3]
    g = tmp_path / "long.log.gz"
    g.write_bytes(gzip.compress(f.read_bytes()))
    t, st = _read(g, parser, max_line_bytes=1000)
    assert [(q["line_no"], q["reason"]) for q in _kinds(t, "quarantine")] == [(2, "line_too_long")]
    assert [r["line_no"] for r in _kinds(t, "line")] == [1, 3]


@pytest.mark.parametrize("split_bytes", [97, 1000, 4096])
def test_splits_cover_every_line_once_with_true_line_numbers(
    tmp_path: Path, parser: BatchParser, split_bytes: int, data: Path
) -> None:
    text = gzip.decompress((data / "HDFS/HDFS_20000.log.gz").read_bytes()).splitlines(keepends=True)[:300]
    f = tmp_path / "s.log"
    f.write_bytes(b"".join(text))
    files = expand_inputs([str(f)])
    splits = plan_splits(files, split_bytes)
    assert len(splits) > 1
    counts = {s.split_id: count_newlines(s.path, s.start, s.end) for s in splits}
    got = []
    for s in with_line_bases(splits, counts):
        got += [(r["line_no"], r["content"]) for r in _two_passes(s, parser)[1].to_pylist()]
    want = [(i + 1, parser.line.parse(ln.decode().rstrip("\n")).content) for i, ln in enumerate(text)]
    assert got == want


def test_expand_inputs(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ["d/a.log", "d/sub/b.log.gz", "d/.hidden", "d/_SUCCESS"]:
        (tmp_path / name).write_bytes(b"x")
    names = [Path(f.path).name for f in expand_inputs([str(tmp_path / "d")])]
    assert names == ["a.log", "b.log.gz"]
    assert [Path(f.path).name for f in expand_inputs([str(tmp_path / "d/**/*.gz")])] == ["b.log.gz"]
    with pytest.raises(InputError, match="input not found"):
        expand_inputs([str(tmp_path / "nope.log")])
    with pytest.raises(InputError, match="no file matches"):
        expand_inputs([str(tmp_path / "d/*.zip")])


@pytest.mark.parametrize("gz", [False, True])
def test_line_numbers_across_many_chunks(tmp_path: Path, parser: BatchParser, data: Path, monkeypatch, gz) -> None:
    import fusionlog.ingest.read as read

    monkeypatch.setattr(read, "CHUNK", 1000)  # ~7 lines per chunk instead of 4 MiB
    text = gzip.decompress((data / "HDFS/HDFS_20000.log.gz").read_bytes()).splitlines(keepends=True)[:500]
    text[123] = b"junk line\n"
    text[124] = GOOD + b"y" * 3000 + b"\n"  # over-long, and longer than a chunk
    f = tmp_path / ("c.log.gz" if gz else "c.log")
    body = b"".join(text)
    f.write_bytes(gzip.compress(body) if gz else body)
    t, st = _read(f, parser, max_line_bytes=1000)
    assert st["read"] == 500
    assert [(q["line_no"], q["reason"]) for q in _kinds(t, "quarantine")] == [
        (124, "no_header_match"), (125, "line_too_long")]
    got = [(r["line_no"], r["content"]) for r in _kinds(t, "line")]
    want = [(i + 1, parser.line.parse(ln.decode().rstrip("\n")).content) for i, ln in enumerate(text)
            if i not in (123, 124)]
    assert got == want

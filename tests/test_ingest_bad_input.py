"""Bad input built from the shipped data: a file of random bytes, gzip inside gzip, lone-CR line ends.

One Spark ingest over all of them (plus good controls) is shared by the Spark tests; the split-level
tests check the reader's byte ranges and line numbers without Spark.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from fusionlog import contracts
from fusionlog.config import load_system
from fusionlog.ingest.parse import BatchParser
from fusionlog.ingest.read import _Blocks, non_text_share, parse_split, scan_split
from fusionlog.ingest.sources import Split, count_newlines, expand_inputs, plan_splits, with_line_bases
from fusionlog.ingest.stage import ingest


def _table(run: Path, name: str):  # noqa: ANN202
    return ds.dataset(run / name / "system=HDFS").to_table().to_pandas()


def _hdfs_lines(data: Path, n: int) -> list[bytes]:
    """The first ``n`` real HDFS lines, without their line ends."""
    return gzip.decompress((data / "HDFS/HDFS_20000.log.gz").read_bytes()).splitlines()[:n]


@pytest.fixture(scope="module")
def bad_run(spark, data: Path, tmp_path_factory) -> tuple[Path, object, dict[str, bytes]]:
    src = tmp_path_factory.mktemp("bad_in")
    real_gz = (data / "loghub_2k/HDFS/HDFS_2k.log.gz").read_bytes()  # 2,000 real lines, gzip
    lines = _hdfs_lines(data, 1000)
    text = _hdfs_lines(data, 300)
    files = {
        "random.bin": np.random.default_rng(20240601).bytes(200_000),
        # a text log with a few bad bytes and a NUL stays text (not binary)
        "text_bad_bytes.log": b"\n".join(text[:150] + [b"\xff\xfe\x00 binary"] + text[150:]) + b"\n",
        "single.log.gz": real_gz,
        "double.log.gz.gz": gzip.compress(real_gz),
        "triple.log.gz": gzip.compress(gzip.compress(real_gz)),
        "quad.log.gz": gzip.compress(gzip.compress(gzip.compress(real_gz))),  # one layer too many
        "lf.log": b"\n".join(lines) + b"\n",
        "cr.log": b"\r".join(lines) + b"\r",
        "cr.log.gz": gzip.compress(b"\r".join(lines) + b"\r"),
    }
    for name, body in files.items():
        (src / name).write_bytes(body)
    run = tmp_path_factory.mktemp("bad_run")
    res = ingest("HDFS", [str(src)], run, spark=spark)
    return run, res, files


def _file(res, name: str) -> dict:  # noqa: ANN001
    return next(f for f in res.files if Path(f["file"]).name == name)


def _lines_of(run: Path, name: str):  # noqa: ANN202
    lines = _table(run, "lines")
    return lines[lines["file"].map(lambda p: Path(p).name) == name].sort_values("line_no")


def test_every_file_reconciles(bad_run) -> None:
    run, res, files = bad_run
    assert {Path(f["file"]).name for f in res.files} == set(files)
    for f in res.files:
        assert f["read"] == f["parsed"] + f["quarantined"], f["file"]
    stats = json.loads((run / "stats/ingest_HDFS.json").read_text())
    assert {Path(f["file"]).name: f["read"] for f in stats["files"]} == {
        Path(f["file"]).name: f["read"] for f in res.files}


def test_random_bytes_are_binary_quarantined_whole_and_not_mined(bad_run) -> None:
    run, res, files = bad_run
    f = _file(res, "random.bin")
    n = len(files["random.bin"].splitlines())  # lines as the reader ends them: LF, CRLF, lone CR
    assert n > 700
    assert f["parsed"] == 0 and f["read"] == n == f["quarantined"]
    assert f["reasons"] == {"binary_file": n}
    assert f["binary"] is True and any("treated as binary" in e for e in f["errors"])
    q = _table(run, "quarantine")
    q = q[q["file"] == f["file"]].sort_values("line_no")
    assert list(q["line_no"]) == list(range(1, n + 1)) and set(q["reason"]) == {"binary_file"}
    assert list(q["raw"]) == files["random.bin"].splitlines()
    # nothing of it reached the miner: every template count is a parsed line of the other files
    assert _lines_of(run, "random.bin").empty
    t = _table(run, "templates")
    assert t["count"].sum() == res.lines == len(_table(run, "lines"))
    # the control: a text log with a few bad bytes (and a NUL) is not binary
    c = _file(res, "text_bad_bytes.log")
    assert c["binary"] is False and c["parsed"] == 300 and c["reasons"] == {"no_header_match": 1}


def test_gzip_inside_gzip_reads_like_the_single_gzip(bad_run) -> None:
    run, res, _ = bad_run
    single = _lines_of(run, "single.log.gz")
    assert _file(res, "single.log.gz")["parsed"] == 2000 == len(single)
    want = list(zip(single["line_no"], single["template_id"], single["content"], strict=True))
    for name, layers in (("double.log.gz.gz", 2), ("triple.log.gz", 3)):
        f = _file(res, name)
        assert f["read"] == f["parsed"] == 2000 and f["quarantined"] == 0
        got = _lines_of(run, name)
        assert list(zip(got["line_no"], got["template_id"], got["content"], strict=True)) == want
        assert f["gz_layers"] == layers
        assert any(name in note and f"{layers} layers" in note for note in res.notes)
    assert _file(res, "single.log.gz").get("gz_layers") == 1
    # beyond MAX_GZ_LAYERS (3): quarantined whole with a reason, nothing mined
    quad = _file(res, "quad.log.gz")
    assert quad["parsed"] == 0 and quad["read"] == quad["quarantined"] > 0
    assert quad["reasons"] == {"nested_gzip": quad["read"]} and any("still gzip" in e for e in quad["errors"])


def test_lone_cr_ends_a_line_and_is_counted(bad_run) -> None:
    run, res, _ = bad_run
    lf = _lines_of(run, "lf.log")
    want = list(zip(lf["line_no"], lf["template_id"], lf["content"], strict=True))
    assert list(lf["line_no"]) == list(range(1, 1001))
    for name in ("cr.log", "cr.log.gz"):
        f = _file(res, name)
        assert f["read"] == f["parsed"] == 1000 and f["quarantined"] == 0
        got = _lines_of(run, name)
        assert list(zip(got["line_no"], got["template_id"], got["content"], strict=True)) == want
        assert f["cr_line_ends"] == 1000
        assert any(name in note and "lone CR" in note for note in res.notes)
    assert _file(res, "lf.log")["cr_line_ends"] == 0


# ---------------------------------------------------------------------------------------------
# the reader on its own: byte-range splits and block boundaries


@pytest.fixture(scope="module")
def parser() -> BatchParser:
    return BatchParser(load_system("HDFS"))


def _mixed(data: Path, n: int = 120) -> bytes:
    """Real lines ended in turn by LF, lone CR, CRLF; line 12 ends CR CR LF (a lone CR, then an empty line)."""
    ends = [b"\n", b"\r", b"\r\n"]
    lines = _hdfs_lines(data, n)
    body = b"".join(ln + ends[i % 3] for i, ln in enumerate(lines))
    return body.replace(lines[11] + b"\r\n", lines[11] + b"\r\r\n", 1)


def _scan_and_parse(split: Split, parser: BatchParser) -> tuple[dict, list[dict], list[dict]]:
    scan = pa.Table.from_batches(list(scan_split(split, parser)))
    kinds = scan["kind"].to_pylist()
    stats = json.loads(scan["stats"][kinds.index("stats")].as_py())
    quar = [r for r, k in zip(scan.to_pylist(), kinds, strict=True) if k == "quarantine"]
    # pass 2 needs a template for every distinct message: one dummy id each is enough here
    tpl = {r["masked"]: (0, (), 0) for r, k in zip(scan.to_pylist(), kinds, strict=True) if k == "distinct"}
    lines = pa.Table.from_batches(list(parse_split(split, parser, tpl)), schema=contracts.LINES).to_pylist()
    return stats, lines, quar


def _boundaries(body: bytes) -> list[int]:
    """Split starts at every awkward place: between the CR and LF of a CRLF, just after a lone CR,
    on a lone CR, just after an LF, and mid-line."""
    crlf = body.find(b"\r\n")
    lone = next(i for i in range(len(body)) if body[i] == 13 and body[i + 1] != 10)
    lf = body.find(b"\n", lone + 200)
    cuts = {crlf + 1, lone + 1, body.find(b"\r", lf + 300), lf + 1, len(body) // 2 + 7}
    cuts |= {i + 1 for i in range(len(body) - 1) if body[i : i + 2] == b"\r\n"}  # every CRLF is cut
    return sorted(c for c in cuts if 0 < c < len(body))


def test_splits_with_cr_line_ends_keep_exact_line_numbers(tmp_path: Path, parser: BatchParser, data: Path) -> None:
    body = _mixed(data)
    want_lines = body.splitlines()  # Python's universal line ends: LF, CRLF, lone CR
    f = tmp_path / "mixed.log"
    f.write_bytes(body)
    starts = [0, *_boundaries(body)]
    ends = [*starts[1:], len(body)]
    splits = [Split(i, str(f), s, e, False) for i, (s, e) in enumerate(zip(starts, ends, strict=True))]
    counts = {s.split_id: count_newlines(s.path, s.start, s.end) for s in splits}
    assert sum(counts.values()) == len(want_lines)
    got, quar, cr = [], [], 0
    for s in with_line_bases(splits, counts):
        st, lines, q = _scan_and_parse(s, parser)
        assert st["read"] == st["parsed"] + st["quarantined"] and st["parsed"] == len(lines)
        got += [(r["line_no"], r["content"]) for r in lines]
        quar += [(r["line_no"], r["reason"]) for r in q]
        cr += st["cr_line_ends"]
    want = [(i + 1, parser.line.parse(ln.decode()).content) for i, ln in enumerate(want_lines) if ln]
    assert got == want  # every line once, in order, with its true number
    assert quar == [(13, "empty_line")]  # between the CR and the CRLF that end line 12
    assert cr == body.count(b"\r") - body.count(b"\r\n") == 41


def test_lone_cr_across_block_boundaries(tmp_path: Path, data: Path) -> None:
    body = _mixed(data, 12)
    want = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")  # what the reader makes of the line ends
    lone = body.count(b"\r") - body.count(b"\r\n")
    for cut in range(len(body) + 1):
        blocks = _Blocks(Split(0, "-", 0, len(body), False))
        out = b"".join(blocks._lone_cr(iter([body[:cut], body[cut:]])))
        assert out.replace(b"\r\n", b"\n") == want and blocks.cr_line_ends == lone, cut
    f = tmp_path / "m.log"
    f.write_bytes(body)
    for chunk in (1, 2, 7):
        assert count_newlines(str(f), 0, len(body), chunk=chunk) == len(body.splitlines())


def test_large_binary_file_is_binary_in_every_split(tmp_path: Path, parser: BatchParser) -> None:
    body = np.random.default_rng(7).bytes(300_000)
    f = tmp_path / "blob.dat"
    f.write_bytes(body)
    assert non_text_share(body[:65536]) > 0.5
    splits = plan_splits(expand_inputs([str(f)]), 70_000)
    assert len(splits) == 5
    splits = with_line_bases(splits, {s.split_id: count_newlines(s.path, s.start, s.end) for s in splits})
    nos, msgs = [], []
    for s in splits:
        st, lines, q = _scan_and_parse(s, parser)
        assert not lines and st["binary"] and st["parsed"] == 0 and st["read"] == st["quarantined"] == len(q)
        assert {r["reason"] for r in q} <= {"binary_file"}
        nos += [r["line_no"] for r in q]
        msgs += [e for e in st["errors"] if "treated as binary" in e]
    assert nos == list(range(1, len(body.splitlines()) + 1))
    assert len(msgs) == 1  # said once per file


def test_non_text_share() -> None:
    assert non_text_share(b"") == 0.0
    assert non_text_share("2024-01-01 INFO héllo wörld \t\x1b[0m\r\n".encode()) == 0.0
    assert non_text_share(b"\x00\x01abcdefgh") == 0.2
    assert non_text_share(b"caf\xe9 ok") == 1 / 7  # Latin-1, one undecodable byte

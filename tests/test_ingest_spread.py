"""A large gzip file among too few files is decompressed once and read in byte ranges over every core: the same
tables, counts and notes as reading it in one task; a gzip that does not decompress cleanly stays one task."""

from __future__ import annotations

import contextlib
import gzip
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from fusionlog.config import IngestConfig, load_ingest
from fusionlog.ingest.stage import ingest


def config(spread_gz_mb: float | None) -> IngestConfig:
    cfg = load_ingest()
    # 1 MB splits: the 2.7 MB of 20,000 HDFS lines become 3 byte ranges
    return cfg.model_copy(update={"spark": cfg.spark.model_copy(update={"spread_gz_mb": spread_gz_mb,
                                                                          "split_mb": 1})})


def rows(run: Path, table: str, key: list[str]) -> list[dict]:
    recs = ds.dataset(run / table / "system=HDFS", format="parquet").to_table().to_pylist()
    for r in recs:
        if "file" in r:
            r["file"] = Path(r["file"]).name
    return sorted(recs, key=lambda r: tuple(r[k] for k in key))


@pytest.fixture(scope="module")
def runs(spark, data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    src = tmp_path_factory.mktemp("spread_in")
    real = (data / "HDFS/HDFS_20000.log.gz").read_bytes()  # 20,000 real lines
    lines = gzip.decompress(real).splitlines()
    (src / "big.log.gz").write_bytes(real)
    # gzip inside gzip, with lone-CR line ends (three files: fewer than the 2 x 2 task slots of local[2])
    (src / "double.log.gz.gz").write_bytes(gzip.compress(gzip.compress(b"\r".join(lines[:3000]) + b"\r")))
    (src / "truncated.log.gz").write_bytes(real[: len(real) * 3 // 5])  # cut short: not spread
    out: dict = {}
    for name, mb in (("one", None), ("spread", 0.0)):
        titles: list[str] = []

        @contextlib.contextmanager
        def bar(what: str) -> Iterator[Callable[[int, int], None]]:
            titles.append(what)  # noqa: B023
            yield lambda done, total: None

        run = tmp_path_factory.mktemp(f"spread_{name}")
        out[name] = (run, ingest("HDFS", [str(src)], run, cfg=config(mb), spark=spark, progress=bar), titles)
    return out


def test_spread_gzip_runs_in_more_tasks_than_files(runs: dict) -> None:
    one, spread = runs["one"][2], runs["spread"][2]
    assert any(t.startswith("ingest: decompress 3 gzip file(s)") for t in spread)
    assert "ingest HDFS pass 1 (3 files, 3 tasks)" in one
    tasks = next(t for t in spread if t.startswith("ingest HDFS pass 1"))
    assert tasks == "ingest HDFS pass 1 (3 files, 5 tasks)"  # 3 byte ranges of big.log.gz, 1 + 1


def test_spread_gzip_gives_the_same_tables(runs: dict) -> None:
    a, b = runs["one"][0], runs["spread"][0]
    for table, key in (("lines", ["file", "line_no"]), ("quarantine", ["file", "line_no"]),
                       ("templates", ["template_id"]), ("windows", ["window_id"])):
        ra, rb = rows(a, table, key), rows(b, table, key)
        assert len(ra) == len(rb) > 0 and ra == rb, table
    assert not list(b.glob(".tmp-work-*")), "the decompressed copies are removed"


def test_spread_gzip_gives_the_same_counts_and_notes(runs: dict) -> None:
    a, b = runs["one"][1], runs["spread"][1]

    def files(res) -> list[dict]:  # noqa: ANN001
        return sorted(({**f, "file": Path(f["file"]).name} for f in res.files), key=lambda f: f["file"])

    assert files(a) == files(b) and (a.lines, a.quarantined, a.windows) == (b.lines, b.quarantined, b.windows)
    by = {f["file"]: f for f in files(b)}
    assert by["double.log.gz.gz"]["gz_layers"] == 2 and by["double.log.gz.gz"]["cr_line_ends"] == 3000
    assert by["truncated.log.gz"]["errors"] and by["truncated.log.gz"]["read"] < 20000
    assert by["big.log.gz"]["read"] == 20000 and by["big.log.gz"]["parsed"] == 20000
    kept = [n for n in b.notes if "read as one task each" in n]
    assert kept == ["1 gzip file(s) read as one task each (they do not decompress cleanly): truncated.log.gz"]
    assert [n for n in b.notes if n not in kept] == a.notes

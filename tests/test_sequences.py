"""Event-sequence datasets write the same templates/ and windows/ contracts."""

from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from fusionlog.ingest.sequences import ingest_sequences, parse_spec


def test_hdfs_sequences(data: Path, tmp_path: Path) -> None:
    res = ingest_sequences("HDFS_seq", data / "HDFS/HDFS_templates.csv",
                           [parse_spec(f"{data}/HDFS/hdfs_train.gz:normal"),
                            parse_spec(f"{data}/HDFS/hdfs_test_abnormal.gz:anomalous")], tmp_path)
    assert (res.windows, res.anomalous_windows, res.templates) == (5583 + 16838, 16838, 33)
    w = ds.dataset(tmp_path / "windows/system=HDFS_seq").to_table().to_pandas()
    first = gzip.decompress((data / "HDFS/hdfs_train.gz").read_bytes()).decode().splitlines()[0]
    sid, events = first.split(",")
    row = w[w["window_id"] == sid].iloc[0]
    assert list(row["template_ids"]) == [int(x) for x in events.split()] and row["label"] == 0
    # split by position within each file: 60/20/20 of each label
    share = w.groupby(["label", "split"]).size() / w.groupby("label").size()
    assert abs(share[(1, "train")] - 0.6) < 0.01 and abs(share[(0, "test")] - 0.2) < 0.01
    t = ds.dataset(tmp_path / "templates/system=HDFS_seq").to_table().to_pandas()
    assert t["count"].sum() == w["n_lines"].sum()


def test_bad_sequence_lines_are_quarantined(data: Path, tmp_path: Path) -> None:
    f = tmp_path / "seq"
    f.write_text("a,1 2 3\nno comma here\nb,1 99\nc,4 x\n\nd,5\n")
    res = ingest_sequences("S", data / "HDFS/HDFS_templates.csv", [(f, None)], tmp_path / "run")
    assert res.windows == 2 and len(res.bad_lines) == 3
    q = ds.dataset(tmp_path / "run/quarantine/system=S").to_table().to_pandas()
    assert sorted(q["line_no"]) == [2, 3, 4] and all(q["reason"].str.startswith("bad_sequence"))
    with pytest.raises(ValueError, match="PATH:normal"):
        parse_spec("file.txt:weird")


def test_sampled_file_is_deterministic_and_reconciles(data: Path, tmp_path: Path) -> None:
    path, label, fraction = parse_spec(f"{data}/HDFS/hdfs_test_abnormal.gz:anomalous:0.01")
    assert (label, fraction) == (1, 0.01)
    runs = [ingest_sequences("H", data / "HDFS/HDFS_templates.csv", [(path, label, fraction)], tmp_path / f"r{k}")
            for k in range(2)]
    assert runs[0].windows + runs[0].sampled_out == 16838  # read = kept + sampled out (+ bad lines: none)
    assert 100 < runs[0].windows < 250  # about 1 % of the anomalous blocks
    ids = [set(ds.dataset(tmp_path / f"r{k}/windows/system=H").to_table()["window_id"].to_pylist()) for k in range(2)]
    assert ids[0] == ids[1]
    for bad in ("x.gz:anomalous:0", "x.gz:anomalous:1.5"):
        with pytest.raises(ValueError, match="fraction"):
            parse_spec(bad)
    with pytest.raises(ValueError, match="PATH:normal"):
        parse_spec("x.gz:anomalous:abc")

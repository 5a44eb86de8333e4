"""Spark ingest on the shipped real samples and on a crafted bad-input archive."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from fusionlog.config import IngestConfig, SparkConfig, load_system
from fusionlog.ingest.stage import ingest


def table(run: Path, name: str, system: str):  # noqa: ANN201
    return ds.dataset(run / name / f"system={system}").to_table().to_pandas()


@pytest.fixture(scope="module")
def hdfs_run(spark, data: Path, tmp_path_factory) -> tuple[Path, object]:
    run = tmp_path_factory.mktemp("hdfs")
    res = ingest("HDFS", [str(data / "HDFS/HDFS_20000.log.gz")], run,
                 labels=[str(data / "HDFS/hdfs_test_abnormal.gz")], spark=spark)
    return run, res


def test_hdfs_outputs_reconcile_and_block_labels(hdfs_run, data: Path) -> None:
    run, res = hdfs_run
    for name in ("lines", "templates", "windows", "quarantine"):
        assert (run / name / "system=HDFS").is_dir()
    assert res.files[0]["read"] == 20000 == res.lines + res.quarantined
    # labels, computed independently from the raw text and the block list
    raw = gzip.decompress((data / "HDFS/HDFS_20000.log.gz").read_bytes()).decode()
    blocks = set(re.findall(r"blk_-?\d+", raw))
    anomalous = {ln.split(",")[0] for ln in gzip.decompress((data / "HDFS/hdfs_test_abnormal.gz").read_bytes())
                 .decode().splitlines()}
    w = table(run, "windows", "HDFS")
    assert set(w["session"]) == blocks
    assert {s for s, lab in zip(w["session"], w["label"], strict=True) if lab == 1} == blocks & anomalous
    assert (w["label"] == 1).sum() == 43
    # every window leads back to its raw lines, and its templates are the lines' templates in order
    lines = table(run, "lines", "HDFS")
    one = w.iloc[0]
    member = lines[lines["sessions"].apply(lambda s: one["session"] in list(s))].sort_values(["ts", "line_no"])
    assert list(member["template_id"]) == list(one["template_ids"])
    assert one["first_line"] == member["line_no"].iloc[0] and one["last_line"] == member["line_no"].iloc[-1]
    raw_lines = raw.splitlines()
    assert one["session"] in raw_lines[one["first_line"] - 1]
    # chronological split: train windows start no later than val, val no later than test
    by = w.groupby("split")["start_ts"]
    assert by.max()["train"] <= by.min()["val"] and by.max()["val"] <= by.min()["test"]


def test_templates_and_params(hdfs_run) -> None:
    run, res = hdfs_run
    t = table(run, "templates", "HDFS")
    assert t["count"].sum() == 20000 and 10 <= len(t) <= 40
    lines = table(run, "lines", "HDFS")
    row = lines[lines["content"].str.startswith("Receiving block")].iloc[0]
    tpl = t.set_index("template_id").loc[row["template_id"], "template"]
    assert tpl == "Receiving block <*> src: /<*> dest: /<*>"
    toks = row["content"].split()
    assert list(row["params"]) == [toks[2], toks[4], toks[6]]


def test_sessions_inside_the_slice(hdfs_run, data: Path, hdfs_natural_run: Path) -> None:
    """The evaluation's rule for sessions cut from a slice, checked against the raw text: the margin is the 99th
    percentile of the pauses between a block's consecutive lines, and a block is inside when it starts that long
    after the slice's first line and ends that long before its last."""
    import datetime as dt
    from itertools import pairwise

    import numpy as np

    from fusionlog.config import ExperimentConfig
    from fusionlog.evaluate.data_checks import inside_slice
    from fusionlog.evaluate.run_metrics import inside, labeled

    run, _ = hdfs_run
    times: dict[str, list[dt.datetime]] = {}
    every = []
    for line in gzip.decompress((data / "HDFS/HDFS_20000.log.gz").read_bytes()).decode().splitlines():
        date, time = line.split()[:2]
        ts = dt.datetime.strptime(f"{date} {time}", "%y%m%d %H%M%S")
        every.append(ts)
        for b in set(re.findall(r"blk_-?\d+", line)):
            times.setdefault(b, []).append(ts)
    pauses = [(b - a).total_seconds() for ts in times.values() for a, b in pairwise(sorted(ts))]
    margin = float(np.quantile(pauses, 0.99))
    sl = inside_slice(run, "HDFS")
    assert sl is not None and sl["margin_s"] == pytest.approx(margin) and margin > 0
    lo, hi = min(every) + dt.timedelta(seconds=margin), max(every) - dt.timedelta(seconds=margin)
    expected = {b for b, ts in times.items() if min(ts) >= lo and max(ts) <= hi}
    w = table(run, "windows", "HDFS")
    got = set(w.set_index("window_id").loc[sl["window_ids"], "session"])
    assert got == expected and 0 < len(got) < len(times)  # the blocks at either end of the slice are left out
    # evaluation's view of it: a mask over the labeled windows, its counts and its label ceiling
    exp = ExperimentConfig.model_validate({
        "name": "x", "sources": ["OpenStack"], "target": "HDFS",
        "datasets": {"HDFS": {"kind": "raw", "inputs": ["data/HDFS/HDFS_20000.log.gz"]},
                     "OpenStack": {"kind": "sequences", "templates": "t.csv", "sequences": ["s.gz:normal"]}}})
    ids, y, _ = labeled(run, "HDFS")
    sel, info = inside(run, exp, ids, y)
    assert info["windows"] == int(sel.sum()) == len(expected)
    assert info["anomalous"] == int(y[sel].sum()) and 0 <= info["signature_ceiling"]["best_f1"] <= 1
    # no timestamps (an event-sequence set), or a target that is not sessions cut from a raw log: no such subset
    assert inside_slice(hdfs_natural_run, "HDFS") is None
    seq = exp.model_copy(update={"target": "OpenStack"})
    assert inside(run, seq, ids, y) is None


def test_bgl_line_labels_and_node_windows(spark, data: Path, tmp_path: Path) -> None:
    src = str(data / "loghub_2k/BGL/BGL_2k.log.gz")
    res = ingest("BGL", [src], tmp_path, window="line", spark=spark)
    w = table(tmp_path, "windows", "BGL")
    raw = gzip.decompress(Path(src).read_bytes()).decode().splitlines()
    want = {i + 1: int(not ln.startswith("- ")) for i, ln in enumerate(raw)}
    assert len(w) == 2000 and res.quarantined == 0
    assert {int(r.first_line): int(r.label) for r in w.itertuples()} == want
    assert sum(want.values()) == 143 == res.anomalous_windows
    # params: the content tokens at the template's variable positions, named placeholders included
    lines = table(tmp_path, "lines", "BGL")
    tpl = table(tmp_path, "templates", "BGL").set_index("template_id")["template"]
    checked = 0
    for r in lines.itertuples():
        toks, ttoks = r.content.split(), tpl[r.template_id].split()
        if r.params is None or len(toks) != len(ttoks):
            continue
        var = [t for t, tt in zip(toks, ttoks, strict=True) if "<" in tt and ">" in tt]
        assert list(r.params) == var
        checked += bool(var)
    assert checked > 500
    # node windows: 120 lines per node, step 120
    res2 = ingest("BGL", [src], tmp_path / "node", spark=spark)
    wn = table(tmp_path / "node", "windows", "BGL")
    assert wn["n_lines"].sum() == 2000 and wn["n_lines"].max() <= 120
    nodes = {ln.split()[3] for ln in raw}
    assert wn["window_id"].str.rsplit("#", n=1).str[0].nunique() == len(nodes)
    assert res2.anomalous_windows == int((wn["label"] == 1).sum()) > 0


def test_sliding_and_time_windows(spark, data: Path, tmp_path: Path) -> None:
    from fusionlog.config import SystemConfig

    base = load_system("BGL").model_dump()
    base["windows"].update(
        slide={"kind": "fixed", "group_by": "node", "size": 4, "step": 2},
        hour={"kind": "time", "length_s": 7200, "step_s": 3600},
    )
    cfg = SystemConfig.model_validate(base)
    src = [str(data / "loghub_2k/BGL/BGL_2k.log.gz")]
    ingest(cfg, src, tmp_path / "s", window="slide", spark=spark)
    w = table(tmp_path / "s", "windows", "BGL")
    assert w["n_lines"].max() == 4
    # with size 4 / step 2 every line is in 2 windows except at the start/end of a node's run
    assert 2000 < w["n_lines"].sum() <= 4000
    ingest(cfg, src, tmp_path / "t", window="hour", spark=spark)
    wt = table(tmp_path / "t", "windows", "BGL")
    assert wt["n_lines"].sum() == 4000  # every line is in exactly two 2-hour windows
    # each line's level rides beside its template id, in the same order (severity reads it)
    assert (w["levels"].apply(len) == w["template_ids"].apply(len)).all()
    lines = table(tmp_path / "t", "lines", "BGL")
    pairs = sorted((t, lv) for ts, ls in zip(wt["template_ids"], wt["levels"], strict=True)
                   for t, lv in zip(ts, ls, strict=True))
    assert pairs == sorted(2 * list(zip(lines["template_id"], lines["level"], strict=True)))
    assert ((wt["end_ts"] - wt["start_ts"]).dt.total_seconds() < 7200).all()


def test_openstack_instance_sessions(spark, data: Path, tmp_path: Path) -> None:
    res = ingest("OpenStack", [str(data / "loghub_2k/OpenStack/OpenStack_2k.log.gz")], tmp_path,
                 labels=[str(data / "OpenStack/anomaly_labels.txt")], spark=spark)
    assert res.quarantined == 0 and res.labels["ids"] == 4 and res.labels["ignored_lines"] >= 1
    w = table(tmp_path, "windows", "OpenStack")
    assert len(w) > 10 and (w["label"] == 0).all()  # OpenStack_2k holds only normal instances
    assert res.lines_outside_windows > 0  # API lines name no instance; they stay in lines/


def test_bad_archive_quarantines_and_reconciles(spark, tmp_path: Path, data: Path) -> None:
    good = gzip.decompress((data / "HDFS/HDFS_20000.log.gz").read_bytes()).splitlines(keepends=True)
    arch = tmp_path / "in"
    arch.mkdir()
    (arch / "a.log").write_bytes(b"".join(good[:100]).replace(b"\n", b"\r\n"))
    (arch / "b.log").write_bytes(b"".join(good[100:200]) + b"garbage line\n\xff\xfe\x00 binary\n")
    (arch / "c.log").write_bytes(b"")
    z = gzip.compress(b"".join(good[200:2200]))
    (arch / "d.log.gz").write_bytes(z[: len(z) * 2 // 3])
    res = ingest("HDFS", [str(arch)], tmp_path / "run", spark=spark)
    files = {Path(f["file"]).name: f for f in res.files}
    assert set(files) == {"a.log", "b.log", "c.log", "d.log.gz"}
    for f in files.values():
        assert f["read"] == f["parsed"] + f["quarantined"]
    assert files["a.log"]["parsed"] == 100 and files["c.log"]["read"] == 0
    assert files["b.log"]["reasons"] == {"no_header_match": 2}
    assert files["d.log.gz"]["reasons"] == {"truncated_gzip": 1} and files["d.log.gz"]["errors"]
    q = table(tmp_path / "run", "quarantine", "HDFS")
    assert set(q["reason"]) == {"no_header_match", "truncated_gzip"}
    assert b"\xff\xfe\x00 binary" in set(q["raw"])


def test_template_ids_stable_across_months(spark, data: Path, tmp_path: Path) -> None:
    raw = gzip.decompress((data / "HDFS/HDFS_20000.log.gz").read_bytes()).splitlines(keepends=True)
    (tmp_path / "a.log").write_bytes(b"".join(raw[:8000]))
    (tmp_path / "b.log").write_bytes(b"".join(raw[8000:]))
    ingest("HDFS", [str(tmp_path / "a.log")], tmp_path / "A", spark=spark)
    res_b = ingest("HDFS", [str(tmp_path / "b.log")], tmp_path / "B",
                   state_in=tmp_path / "A/state/templates_HDFS.json", spark=spark)
    ta, tb = table(tmp_path / "A", "templates", "HDFS"), table(tmp_path / "B", "templates", "HDFS")
    ida = dict(zip(ta["template_id"], ta["template"], strict=True))
    idb = dict(zip(tb["template_id"], tb["template"], strict=True))
    assert set(ida) <= set(idb) and res_b.new_templates == len(idb) - len(ida)
    # a template that month B sees again keeps its id and text
    la, lb = table(tmp_path / "A", "lines", "HDFS"), table(tmp_path / "B", "lines", "HDFS")
    shared = set(la["template_id"]) & set(lb["template_id"])
    assert shared and all(ida[i] == idb[i] for i in shared)
    first = la[la["content"].str.startswith("Receiving block")]["template_id"].iloc[0]
    assert set(lb[lb["content"].str.startswith("Receiving block")]["template_id"]) == {first}


def test_multi_split_plain_file_line_numbers(spark, data: Path, tmp_path: Path) -> None:
    raw = gzip.decompress((data / "HDFS/HDFS_20000.log.gz").read_bytes())
    (tmp_path / "big.log").write_bytes(raw)  # 2.8 MB -> 3 splits of 1 MiB
    cfg = IngestConfig(spark=SparkConfig(master="local[2]", split_mb=1))
    ingest("HDFS", [str(tmp_path / "big.log")], tmp_path / "run", cfg=cfg, spark=spark)
    lines = table(tmp_path / "run", "lines", "HDFS").sort_values("line_no")
    want = raw.decode().splitlines()
    assert list(lines["line_no"]) == list(range(1, 20001))
    assert all(want[n - 1].endswith(c) for n, c in zip(lines["line_no"][::997], lines["content"][::997], strict=True))


def test_a_target_in_too_few_windows_gets_a_note(spark, data: Path, tmp_path: Path) -> None:
    """Hadoop_2k is one container's file, and Hadoop's window is the application (its id from the file path): all
    2,000 lines fall into one window, which a detector can only flag whole. Ingest says so; a line window does not."""
    src = [str(data / "loghub_2k/Hadoop/Hadoop_2k.log.gz")]
    res = ingest("Hadoop", src, tmp_path, spark=spark)
    assert res.windows == 1 and res.lines == 2000
    assert any("2000 lines in 1 window (window 'application')" in n and "finer window" in n for n in res.notes)
    fine = ingest("Hadoop", src, tmp_path / "line", window="line", spark=spark)
    assert fine.windows == 2000 and not any("finer window" in n for n in fine.notes)

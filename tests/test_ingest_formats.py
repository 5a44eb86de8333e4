"""Real archive shapes: HDFS_2k's real lines wrapped as docker's json-file, CRI, a Fluent Bit record and a structured
logger's JSON, ingested with envelopes, give the lines, templates, sessions and labels of the raw file; timestamps in
RFC 3339 with nanoseconds parse; a file whose timestamps do not parse is said loudly (ingest warning, report)."""

from __future__ import annotations

import gzip
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from fusionlog.config import SystemConfig, load_system
from fusionlog.evaluate.run_report import ingest_warnings
from fusionlog.ingest.parse import LineParser, iso_timestamp
from fusionlog.ingest.stage import ingest

HDFS_HEADER = re.compile(r"^(\d{6}) (\d{6}) ")


def system(**update: object) -> SystemConfig:
    """HDFS's system YAML with ``update`` applied (validated: a bad setting fails as in a YAML file)."""
    return SystemConfig.model_validate({**load_system("HDFS").model_dump(exclude_none=True), **update})


def raw_lines(data: Path) -> list[str]:
    return gzip.decompress((data / "loghub_2k/HDFS/HDFS_2k.log.gz").read_bytes()).decode().splitlines()


def stamp(line: str) -> datetime:
    d, t = HDFS_HEADER.match(line).groups()  # type: ignore[union-attr]
    return datetime.strptime(d + t, "%y%m%d%H%M%S")


def rfc3339(line: str) -> str:
    """The line's time as a container runtime writes it: nanoseconds, in UTC."""
    return stamp(line).strftime("%Y-%m-%dT%H:%M:%S") + ".123456789Z"


def write(path: Path, lines: list[str]) -> str:
    path.write_text("".join(x + "\n" for x in lines))
    return str(path)


def table(run: Path, name: str, system_name: str):  # noqa: ANN201
    return ds.dataset(run / name / f"system={system_name}").to_table().to_pandas()


def by_line(run: Path, system_name: str):  # noqa: ANN201
    lines = table(run, "lines", system_name)
    tpl = dict(zip(*[table(run, "templates", system_name)[c] for c in ("template_id", "template")], strict=True))
    lines["template"] = lines["template_id"].map(tpl)
    return lines.sort_values("line_no").reset_index(drop=True)


@pytest.fixture(scope="module")
def raw_run(spark, data: Path, tmp_path_factory) -> tuple[Path, object]:
    run = tmp_path_factory.mktemp("raw")
    res = ingest(system(), [str(data / "loghub_2k/HDFS/HDFS_2k.log.gz")], run,
                 labels=[str(data / "HDFS/hdfs_test_abnormal.gz")], spark=spark)
    return run, res


SHAPES = {
    # docker's json-file driver: the line the program wrote (with its newline), the stream, RFC 3339 nanoseconds
    "docker": (lambda ln: json.dumps({"log": ln + "\n", "stream": "stdout", "time": rfc3339(ln)}),
               {"envelope": {"format": "json", "fields": {"Stamp": "time", "Stream": "stream"}},
                "timestamp": {"fields": ["Stamp"], "format": "iso8601"}}),
    # containerd / CRI-O
    "cri": (lambda ln: f"{rfc3339(ln)} stdout F {ln}",
            {"envelope": {"format": "cri", "fields": {"Stamp": "time"}},
             "timestamp": {"fields": ["Stamp"], "format": "rfc3339"}}),
    # Fluent Bit's kubernetes filter: epoch seconds as a number, the pod in a nested object
    "fluentbit": (lambda ln: json.dumps({"date": stamp(ln).replace(tzinfo=timezone.utc).timestamp() + 0.25,
                                         "log": ln, "kubernetes": {"pod_name": "hdfs-datanode-0", "host": "node-1"}}),
                  {"envelope": {"format": "json", "fields": {"Stamp": "date", "Pod": "kubernetes.pod_name"}},
                   "timestamp": {"fields": ["Stamp"], "format": "epoch"},
                   "fields": {"level": "Level", "component": "Component", "node": "Pod"}}),
}
EXPECTED_US = {"docker": 123456, "cri": 123456, "fluentbit": 250000}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_wrapped_lines_ingest_as_the_raw_file(shape: str, raw_run, spark, data: Path, tmp_path: Path) -> None:
    run0, res0 = raw_run
    wrap, update = SHAPES[shape]
    lines = raw_lines(data)
    path = write(tmp_path / f"hdfs.{shape}.log", [wrap(ln) for ln in lines])
    res = ingest(system(**update), [path], tmp_path / "run", labels=[str(data / "HDFS/hdfs_test_abnormal.gz")],
                 spark=spark)
    assert res.lines == res0.lines == 2000 and res.quarantined == 0 and not res.warnings
    assert res.files[0]["no_timestamp"] == 0
    a, b = by_line(run0, "HDFS"), by_line(tmp_path / "run", "HDFS")
    assert list(a["template"]) == list(b["template"]) and list(a["content"]) == list(b["content"])
    assert [list(s) for s in a["sessions"]] == [list(s) for s in b["sessions"]]
    assert list(a["level"]) == list(b["level"]) and list(a["component"]) == list(b["component"])
    # the envelope's time, to the microsecond, in UTC: the raw header's second plus the envelope's fraction
    assert [(t - s).total_seconds() * 1e6 for t, s in zip(b["ts"], a["ts"], strict=True)] == \
        pytest.approx([EXPECTED_US[shape]] * 2000, abs=1)
    if shape == "fluentbit":
        assert set(b["node"]) == {"hdfs-datanode-0"}
    wa, wb = table(run0, "windows", "HDFS"), table(tmp_path / "run", "windows", "HDFS")
    assert dict(zip(wa["session"], wa["label"], strict=True)) == dict(zip(wb["session"], wb["label"], strict=True))
    assert int(wb["label"].sum()) == res0.anomalous_windows > 0


def test_structured_logger_json_with_session_field(raw_run, spark, data: Path, tmp_path: Path) -> None:
    """A logger that writes JSON: the message is the content, level and logger are JSON keys, the session a JSON
    field (here the block id the line names, as a trace id would be)."""
    run0, _ = raw_run
    rx = re.compile(r"^\d{6} \d{6} \d+ (\w+) ([^:]+): (.*)$")
    recs = []
    for ln in raw_lines(data):
        level, comp, msg = rx.match(ln).groups()  # type: ignore[union-attr]
        blk = re.search(r"blk_-?\d+", msg)
        recs.append(json.dumps({"ts": stamp(ln).strftime("%Y-%m-%d %H:%M:%S+00:00"), "level": level,
                                "logger": comp, "msg": msg, "ctx": {"block": blk.group(0) if blk else None}}))
    sc = system(log_format="<Content>",
                envelope={"format": "json", "message": "msg",
                          "fields": {"Stamp": "ts", "Level": "level", "Component": "logger", "Block": "ctx.block"}},
                timestamp={"fields": ["Stamp"], "format": "iso8601"},
                sessions=[{"source": "field", "field": "Block", "pattern": ".+"}])
    res = ingest(sc, [write(tmp_path / "app.jsonl", recs)], tmp_path / "run", spark=spark)
    assert res.lines == 2000 and not res.warnings
    a, b = by_line(run0, "HDFS"), by_line(tmp_path / "run", "HDFS")
    assert list(a["template"]) == list(b["template"]) and list(a["ts"]) == list(b["ts"])
    assert list(a["level"]) == list(b["level"])
    first = [list(s)[:1] for s in a["sessions"]]  # the JSON field holds the first block a line names
    assert first == [list(s) for s in b["sessions"]]


def test_bad_records_are_quarantined_and_counted(spark, data: Path, tmp_path: Path) -> None:
    wrap, update = SHAPES["docker"]
    lines = [wrap(ln) for ln in raw_lines(data)[:300]]
    lines[10] = "not json at all"
    lines[20] = json.dumps(["a", "list"])
    lines[30] = json.dumps({"stream": "stdout", "time": "2008-11-09T20:35:18Z"})  # no message
    res = ingest(system(**update), [write(tmp_path / "x.log", lines)], tmp_path / "run", spark=spark)
    assert res.files[0]["read"] == 300 and res.lines == 297 and res.quarantined == 3
    q = table(tmp_path / "run", "quarantine", "HDFS")
    assert sorted(q["line_no"]) == [11, 21, 31] and set(q["reason"]) == {"no_header_match"}


def test_timestamps_that_do_not_parse_are_said_loudly(raw_run, spark, data: Path, tmp_path: Path) -> None:
    wrap, _ = SHAPES["docker"]
    lines = [wrap(ln) for ln in raw_lines(data)]
    env = {"format": "json", "fields": {"Stamp": "time"}}
    path = write(tmp_path / "docker.log", lines)
    # the format users write for such lines reads nanoseconds (the fraction is cut to microseconds)
    ok = ingest(system(envelope=env, timestamp={"fields": ["Stamp"], "format": "%Y-%m-%dT%H:%M:%S.%fZ"}), [path],
                tmp_path / "ok", spark=spark)
    assert not ok.warnings and ok.files[0]["no_timestamp"] == 0
    # a wrong format: every line counted, a warning naming the file, the format, the count and a sample line
    bad = ingest(system(envelope=env, timestamp={"fields": ["Stamp"], "format": "%d/%m/%Y %H:%M:%S"}), [path],
                 tmp_path / "bad", spark=spark)
    assert bad.files[0]["no_timestamp"] == 2000 and len(bad.warnings) == 1
    w = bad.warnings[0]
    assert "docker.log" in w and "2,000 of 2,000" in w and "%d/%m/%Y %H:%M:%S" in w and "line 1:" in w
    assert lines[0][:60] in w
    assert ingest_warnings(tmp_path / "bad", ["HDFS"]) == [f"Ingest of HDFS: {w}"]  # the report shows it
    # 1 % of the lines is the line: 30 bad timestamps of 2,000 warn, 10 do not
    for n, warned in ((10, False), (30, True)):
        spoilt = {i * (2000 // n) for i in range(n)}
        mixed = [ln.replace('"time": "', '"time": "x') if i in spoilt else ln for i, ln in enumerate(lines)]
        r = ingest(system(envelope=env, timestamp={"fields": ["Stamp"], "format": "iso8601"}),
                   [write(tmp_path / f"mixed{n}.log", mixed)], tmp_path / f"mixed{n}", spark=spark)
        assert r.files[0]["no_timestamp"] == n and bool(r.warnings) is warned


def test_timestamp_formats() -> None:
    p = LineParser(system(envelope={"format": "json", "fields": {"Stamp": "t"}},
                          timestamp={"fields": ["Stamp"], "format": "rfc3339"}))
    assert p.timestamp("2016-10-06T00:17:09.669794202Z") == datetime(2016, 10, 6, 0, 17, 9, 669794)
    assert p.timestamp("2016-10-06T02:17:09.5+02:00") == datetime(2016, 10, 6, 0, 17, 9, 500000)
    assert p.timestamp("2016-10-06 00:17:09") == datetime(2016, 10, 6, 0, 17, 9)
    assert p.timestamp("06/10/2016") is None and iso_timestamp("") is None
    for fmt, text in (("epoch_ms", "1475713029669"), ("epoch_us", "1475713029669794"),
                      ("epoch_ns", "1475713029669794202")):
        q = LineParser(system(envelope={"format": "json", "fields": {"Stamp": "t"}},
                              timestamp={"fields": ["Stamp"], "format": fmt}))
        assert abs((q.timestamp(text) - datetime(2016, 10, 6, 0, 17, 9, 669794)).total_seconds()) < 1e-3
    with pytest.raises(ValueError, match="neither a strptime format"):
        system(timestamp={"fields": ["Date"], "format": "iso"})
    with pytest.raises(ValueError, match="not in log_format or the envelope"):
        system(envelope={"format": "json", "fields": {"Stamp": "t"}}, timestamp={"fields": ["When"],
                                                                                  "format": "iso8601"})
    with pytest.raises(ValueError, match="also fields of log_format"):
        system(envelope={"format": "json", "fields": {"Level": "level"}})
    with pytest.raises(ValueError, match="cri envelope has the parts"):
        system(envelope={"format": "cri", "fields": {"Stamp": "when"}})

"""Spark beyond local mode: a standalone master and a worker on 127.0.0.1, started from pyspark's own launcher
(``bin/spark-class``, what ``start-master.sh``/``start-worker.sh`` run; the pip package ships the launcher, not those
scripts), ``fusionlog ingest --master spark://127.0.0.1:PORT`` on shipped HDFS lines, and the outputs of local mode
table by table. The fixture stops what it started and checks that it is gone."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.dataset as ds
import pytest

REPO = Path(__file__).resolve().parents[1]
DEADLINE_S = 120  # for the master and the worker to come up


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def wait_for(log: Path, text: str, proc: subprocess.Popen, what: str) -> None:
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            pytest.fail(f"the Spark {what} exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.5)
    pytest.fail(f"the Spark {what} did not log {text!r} within {DEADLINE_S} s: {log}")


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A Spark standalone master and one worker (2 cores) on loopback; yields the master URL and the log folder."""
    logs = tmp_path_factory.mktemp("spark_standalone")
    home = spark_home()
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(logs),
           "SPARK_WORKER_DIR": str(logs / "work"), "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false"}
    port = free_port()
    url = f"spark://127.0.0.1:{port}"
    launcher = str(home / "bin/spark-class")
    procs: list[subprocess.Popen] = []
    try:
        master_log = logs / "master.log"
        with master_log.open("wb") as out:
            procs.append(subprocess.Popen(
                [launcher, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                 "--webui-port", str(free_port())], env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True))
        wait_for(master_log, "I have been elected leader", procs[0], "master")
        worker_log = logs / "worker.log"
        with worker_log.open("wb") as out:
            procs.append(subprocess.Popen(
                [launcher, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "2",
                 "--memory", "2g", "--webui-port", str(free_port()), url], env=env, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True))
        wait_for(worker_log, "Successfully registered with master", procs[1], "worker")
        yield url, logs
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=30)
    assert all(p.poll() is not None for p in procs)
    with socket.socket() as s:  # nothing listens on the master's port any more (closed connections may linger)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def fusionlog_ingest(inputs: list[Path], out: Path, master: str, data: Path) -> str:
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "FUSIONLOG_CONF": str(REPO / "conf")}
    cmd = [str(Path(sys.executable).parent / "fusionlog"), "ingest", *map(str, inputs), "-s", "HDFS", "-o", str(out),
           "--labels", str(data / "HDFS/hdfs_test_abnormal.gz"), "--master", master]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


TABLES = {"lines": ["file", "line_no"], "templates": ["template_id"], "windows": ["window_id"],
          "quarantine": ["file", "line_no"]}


def table(run: Path, name: str) -> list[dict]:
    """A run table's rows, sorted by its key, file paths cut to their names."""
    rows = ds.dataset(run / name, format="parquet", partitioning="hive").to_table().to_pylist()
    for r in rows:
        for k in ("file", "first_file", "last_file"):
            if r.get(k):
                r[k] = Path(r[k]).name
    return sorted(rows, key=lambda r: tuple(str(r[k]) for k in TABLES[name]))


def test_standalone_master_gives_local_outputs(standalone, spark, data: Path, tmp_path: Path) -> None:
    from fusionlog.ingest.stage import ingest

    url, logs = standalone
    # two archives, so the job has several tasks for the worker's executor
    raw = gzip.decompress((data / "loghub_2k/HDFS/HDFS_2k.log.gz").read_bytes()).decode().splitlines(keepends=True)
    inputs = []
    for i, part in enumerate((raw[:1000], raw[1000:])):
        p = tmp_path / f"in/HDFS_2k.part{i}.log.gz"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(gzip.compress("".join(part).encode()))
        inputs.append(p)
    fusionlog_ingest(inputs, tmp_path / "remote", url, data)
    # local mode: the tests' shared session (local[2]), the CLI's ingest function
    ingest("HDFS", [str(p) for p in inputs], tmp_path / "local", labels=[str(data / "HDFS/hdfs_test_abnormal.gz")],
           spark=spark)

    # the job ran on the standalone cluster: the master launched an executor for it, and the executor ran tasks
    master_log = (logs / "master.log").read_text(errors="replace")
    assert "Registering app fusionlog" in master_log and "Launching executor" in master_log
    executor_logs = list((logs / "work").glob("app-*/*/stderr"))
    assert executor_logs and any("Finished task" in p.read_text(errors="replace") for p in executor_logs)

    remote, local = tmp_path / "remote", tmp_path / "local"
    for name in TABLES:
        a, b = table(local, name), table(remote, name)
        assert a == b, f"{name} differs between local[*] and {url}"
    assert len(table(remote, "lines")) == 2000
    assert any(w["label"] for w in table(remote, "windows"))
    for rel in ("state/templates_HDFS.json",):
        assert json.loads((local / rel).read_text()) == json.loads((remote / rel).read_text())
    sa, sb = (json.loads((r / "stats/ingest_HDFS.json").read_text()) for r in (local, remote))
    counts = ("lines", "templates", "windows", "quarantined")
    assert {k: sa.get(k) for k in counts} == {k: sb.get(k) for k in counts}

"""Shared fixtures: the shipped data, one local Spark session for the whole test session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
os.environ.setdefault("FUSIONLOG_CONF", str(REPO / "conf"))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


@pytest.fixture(scope="session")
def spark():
    from fusionlog.config import SparkConfig
    from fusionlog.spark import get_spark

    s = get_spark(SparkConfig(master="local[2]", shuffle_partitions=4))
    yield s
    s.stop()


@pytest.fixture(scope="session")
def data() -> Path:
    return DATA


@pytest.fixture(scope="session")
def hdfs_natural_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory holding real HDFS blocks at the natural anomaly rate (the anomalous ones sampled at 1 %,
    ≈ 3 %) as its ``windows/``."""
    from fusionlog.ingest.sequences import ingest_sequences, parse_spec

    out = tmp_path_factory.mktemp("hdfs_natural")
    ingest_sequences("HDFS", DATA / "HDFS/HDFS_templates.csv",
                     [parse_spec(f"{DATA}/HDFS/hdfs_train.gz:normal"),
                      parse_spec(f"{DATA}/HDFS/hdfs_test_abnormal.gz:anomalous:0.01")], out)
    return out


@pytest.fixture(scope="session")
def hdfs_natural(hdfs_natural_run: Path) -> tuple[list[list[int]], list[int]]:
    """Those blocks' template ids and labels (for the tests to score label-free methods with)."""
    from fusionlog.train.data import read_windows

    t = read_windows(hdfs_natural_run, "HDFS", ["template_ids", "label"])
    return t["template_ids"].to_pylist(), t["label"].to_pylist()


@pytest.fixture(scope="module")
def ray_local():
    """A short-lived local Ray (2 CPUs, no dashboard) per test module."""
    import ray

    from fusionlog.ray_runtime import init_ray

    init_ray(num_cpus=2)
    yield
    ray.shutdown()


def embedded_sequences(out: Path, system: str, templates: Path, specs: list[str]) -> Path:
    """A run with one event-sequence dataset ingested (``PATH:label`` specs) and its templates embedded."""
    from fusionlog.config import EmbedConfig
    from fusionlog.embed.stage import embed
    from fusionlog.ingest.sequences import ingest_sequences, parse_spec

    ingest_sequences(system, templates, [parse_spec(s) for s in specs], out)
    embed(out, EmbedConfig())
    return out

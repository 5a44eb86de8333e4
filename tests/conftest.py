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

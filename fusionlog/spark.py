"""The Spark session: ``local[*]`` by default, any master URL from config."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from fusionlog.config import SparkConfig


class JavaError(RuntimeError):
    """Java is missing or too old for Spark 4."""


def check_java() -> str:
    """Return the Java version line, or raise with a clear message (Spark 4 needs Java 17+)."""
    java = shutil.which("java", path=os.path.join(os.environ["JAVA_HOME"], "bin")) if os.environ.get(
        "JAVA_HOME"
    ) else shutil.which("java")
    if not java:
        raise JavaError("Java not found: Spark needs Java 17 (e.g. apt-get install openjdk-17-jre-headless)")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    first = out.splitlines()[0] if out else ""
    try:
        ver = first.split('"')[1]
        major = int(ver.split(".")[0] if not ver.startswith("1.") else ver.split(".")[1])
    except (IndexError, ValueError):
        raise JavaError(f"cannot read the Java version from {first!r}") from None
    if major < 17:
        raise JavaError(f"Spark 4 needs Java 17 or newer, found {first!r} ({java})")
    return first


def get_spark(cfg: SparkConfig | None = None, app: str = "fusionlog"):  # noqa: ANN201
    """Create (or reuse) the Spark session."""
    cfg = cfg or SparkConfig()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    check_java()
    b = (
        SparkSession.builder.appName(app)
        .master(cfg.master)
        .config("spark.driver.memory", cfg.driver_memory)
        .config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    )
    if cfg.master.startswith("local"):  # keep a laptop run on loopback; clusters need a routable host
        b = b.config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
    for k, v in cfg.conf.items():
        b = b.config(k, v)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


if __name__ == "__main__":  # `python -m fusionlog.spark`: the set-up's Java check
    try:
        print("java:", check_java())
    except JavaError as exc:
        sys.exit(f"error: {exc}")

"""Label adapters: line labels from a header field, session labels from a list of anomalous ids."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fusionlog.config import SessionListLabels


def read_session_list(spark: SparkSession, paths: list[str], cfg: SessionListLabels) -> tuple[DataFrame, dict]:
    """Read label files into (session, anomalous) rows.

    Each line's first comma-separated field is an id if it fully matches ``cfg.id_pattern``; an
    optional second field ``Normal``/``Anomaly`` (loghub anomaly_label.csv) sets the label, otherwise
    a listed id is anomalous. Returns the table and counts (ids, anomalous, ignored lines).
    """
    raw = spark.read.text(paths)
    first = F.trim(F.split(F.col("value"), ",").getItem(0))
    second = F.lower(F.trim(F.get(F.split(F.col("value"), ","), 1)))
    rows = raw.select(first.alias("session"), second.alias("tag"))
    is_id = F.col("session").rlike(f"^(?:{cfg.id_pattern})$")
    ids = rows.where(is_id).select(
        "session",
        F.when(F.col("tag").isin("normal", "0", "false"), F.lit(0)).otherwise(F.lit(1)).cast("tinyint").alias(
            "anomalous"
        ),
    )
    ids = ids.groupBy("session").agg(F.max("anomalous").alias("anomalous")).cache()
    c = ids.agg(F.count(F.lit(1)).alias("ids"), F.sum("anomalous").alias("anom")).first()
    ignored = rows.where(~is_id).count()
    return ids, {"ids": int(c["ids"]), "anomalous": int(c["anom"] or 0), "ignored_lines": ignored}


def label_lines_by_session(lines: DataFrame, ids: DataFrame, unlisted: str) -> DataFrame:
    """Set each line's label to anomalous when any of its sessions is (for non-session windows)."""
    ex = lines.select("file", "line_no", F.explode("sessions").alias("session"))
    flag = (
        ex.join(F.broadcast(ids), "session", "left")
        .groupBy("file", "line_no")
        .agg(F.max(F.coalesce("anomalous", F.lit(0 if unlisted == "normal" else None).cast("tinyint"))).alias("s"))
    )
    out = lines.join(flag, ["file", "line_no"], "left")
    return out.withColumn("label", F.greatest("label", "s").cast("tinyint")).drop("s")

"""Windows over parsed lines (Spark): by session, fixed-size per key, time-based per key, or per line."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from fusionlog.config import WindowPolicy

_KEY = {"node": "node", "component": "component", "file": "file"}


def _key_col(policy: WindowPolicy, lines: DataFrame) -> tuple[DataFrame, str]:
    """Add column ``wkey`` (the grouping key of a policy; '*' when none)."""
    if policy.kind == "session" or policy.group_by == "session":
        return lines.withColumn("wkey", F.explode("sessions")), "wkey"
    if policy.group_by:
        return lines.withColumn("wkey", F.coalesce(F.col(_KEY[policy.group_by]), F.lit("?"))), "wkey"
    return lines.withColumn("wkey", F.lit("*")), "wkey"


def _aggregate(assigned: DataFrame, group: list[str], files: list[str]) -> DataFrame:
    """Windows of the grouped lines; the file is carried as an index into ``files`` (cheaper to sort)."""
    xs = F.sort_array(F.collect_list(F.struct("ts", "fidx", "line_no", "template_id", "level")))
    agg = assigned.groupBy(*group).agg(
        xs.alias("xs"),
        F.max("label").cast("tinyint").alias("label"),
        F.min("ts").alias("start_ts"),
        F.max("ts").alias("end_ts"),
        F.count(F.lit(1)).alias("n_lines"),
    )
    names = F.lit(files) if files else F.array().cast("array<string>")
    return (
        agg.withColumn("template_ids", F.transform("xs", lambda x: x["template_id"]))
        .withColumn("levels", F.transform("xs", lambda x: x["level"]))
        .withColumn("first_file", F.element_at(names, F.col("xs")[0]["fidx"] + 1))
        .withColumn("first_line", F.col("xs")[0]["line_no"])
        .withColumn("last_file", F.element_at(names, F.element_at("xs", -1)["fidx"] + 1))
        .withColumn("last_line", F.element_at("xs", -1)["line_no"])
        .drop("xs")
    )


def _with_file_index(lines: DataFrame) -> tuple[DataFrame, list[str]]:
    files = sorted(r["file"] for r in lines.select("file").distinct().collect())
    index = lines.sparkSession.createDataFrame([(f, i) for i, f in enumerate(files)], "file string, fidx int")
    return lines.join(F.broadcast(index), "file"), files


def build_windows(lines: DataFrame, policy: WindowPolicy) -> DataFrame:
    """Windows of ``lines`` (columns of the lines contract); ``label`` = max of member line labels.

    Lines are ordered by (ts, file, line_no) inside a window. Lines without a session (session
    windows) or without a timestamp (time windows) belong to no window; the caller counts them.
    """
    if policy.kind == "line":
        return lines.select(
            F.concat_ws(":", "file", F.col("line_no").cast("string")).alias("window_id"),
            F.lit(None).cast("string").alias("session"),
            F.col("file").alias("first_file"),
            F.col("line_no").alias("first_line"),
            F.col("file").alias("last_file"),
            F.col("line_no").alias("last_line"),
            F.col("ts").alias("start_ts"),
            F.col("ts").alias("end_ts"),
            F.lit(1).cast("long").alias("n_lines"),
            F.array("template_id").alias("template_ids"),
            F.array("level").alias("levels"),
            F.col("label").cast("tinyint").alias("label"),
        )
    lines, files = _with_file_index(lines)
    keyed, key = _key_col(policy, lines)
    if policy.kind == "session":
        w = _aggregate(keyed, [key], files)
        return w.withColumn("window_id", F.col(key)).withColumnRenamed(key, "session")
    if policy.kind == "fixed":
        order = Window.partitionBy(key).orderBy(F.col("ts").asc_nulls_first(), "file", "line_no")
        keyed = keyed.withColumn("_rn", F.row_number().over(order) - 1)
        rn = F.col("_rn")
        size, step = int(policy.size), int(policy.step)  # type: ignore[arg-type]
        lo = F.greatest(F.lit(0), F.ceil((rn - size + 1) / step)).cast("long")
        hi = F.floor(rn / step).cast("long")
        assigned = keyed.withColumn("widx", F.explode(F.sequence(lo, hi))).drop("_rn")
    else:  # time
        t = F.unix_micros(F.col("ts").cast("timestamp")) / 1e6
        length, step = float(policy.length_s), float(policy.step_s)  # type: ignore[arg-type]
        lo = (F.floor((t - length) / step) + 1).cast("long")
        hi = F.floor(t / step).cast("long")
        assigned = keyed.where(F.col("ts").isNotNull()).withColumn("widx", F.explode(F.sequence(lo, hi)))
    w = _aggregate(assigned, [key, "widx"], files)
    w = w.withColumn("window_id", F.concat_ws("#", F.col(key), F.col("widx").cast("string")))
    session = F.col(key) if policy.group_by == "session" else F.lit(None).cast("string")
    return w.withColumn("session", session).drop(key, "widx")


def assign_splits(windows: DataFrame, fractions: dict[str, float]) -> DataFrame:
    """Chronological split: order windows by start time (else first file/line), cut by quantiles.

    Never shuffled across time: every train window starts no later than any val window, and so on.
    """
    order = F.coalesce(
        F.unix_micros(F.col("start_ts").cast("timestamp")).cast("double"),
        F.lit(None).cast("double"),
    )
    has_ts = windows.where(F.col("start_ts").isNotNull()).limit(1).count() > 0
    if has_ts:
        keyed = windows.withColumn("_k", order)
    else:  # no timestamps: position in the input (file order, then line)
        rank = F.dense_rank().over(Window.orderBy("first_file"))
        keyed = windows.withColumn("_k", (rank * F.lit(1e12) + F.col("first_line")).cast("double"))
    p_train = fractions.get("train", 0.0)
    p_val = p_train + fractions.get("val", 0.0)
    q = keyed.where(F.col("_k").isNotNull()).approxQuantile("_k", [p_train, p_val], 1e-4)
    if not q:
        return keyed.withColumn("split", F.lit(None).cast("string")).drop("_k")
    q1, q2 = q
    split = (
        F.when(F.col("_k").isNull(), F.lit(None))
        .when((F.col("_k") < q1) | F.lit(p_train >= 1.0), "train")
        .when((F.col("_k") < q2) | F.lit(p_val >= 1.0), "val")
        .otherwise("test")
    )
    return keyed.withColumn("split", split).drop("_k")

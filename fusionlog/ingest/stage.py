"""The ingest stage: raw archives -> ``lines/``, ``templates/``, ``windows/``, ``quarantine/`` (Spark)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fusionlog import contracts
from fusionlog.config import IngestConfig, SessionListLabels, SystemConfig, load_ingest, load_system
from fusionlog.console import Reporter
from fusionlog.ingest.labels import label_lines_by_session, read_session_list
from fusionlog.ingest.mask import placeholders
from fusionlog.ingest.parse import BatchParser
from fusionlog.ingest.read import SCAN, Templates, gunzip_split, parse_split, scan_split
from fusionlog.ingest.sources import InputFile, Split, count_newlines, expand_inputs, plan_splits, with_line_bases
from fusionlog.ingest.templates import PARAM, TemplateMiner
from fusionlog.ingest.windows import assign_splits, build_windows
from fusionlog.io import atomic_dir, atomic_write_text, clean_temp
from fusionlog.rundir import ingest_scratch, ingest_stats_file, state_file, table_dir
from fusionlog.spark import get_spark


class ReconcileError(RuntimeError):
    """read != parsed + quarantined for some file: a bug, never silently accepted."""


TS_FAIL_SHARE = 0.01  # more than this share of a file's parsed lines without a timestamp: a warning
FEW_WINDOWS = 10  # fewer windows than this (from more lines): a note that every method can only flag the whole log


@dataclass
class IngestResult:
    system: str
    out: Path
    files: list[dict] = field(default_factory=list)
    lines: int = 0
    quarantined: int = 0
    templates: int = 0
    new_templates: int = 0
    windows: int = 0
    anomalous_windows: int | None = None
    lines_outside_windows: int = 0
    labels: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # what most likely makes the run wrong (said loudly)

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["out"] = str(self.out)
        return d


def _run_splits(spark: SparkSession, splits: list[Split], fn,  # noqa: ANN001
                progress: Callable[[int, int], None] | None = None) -> list:
    """Run ``fn(split)`` (rows written, or a dict of counts) on every split, one split per Spark task;
    ``progress(done, total)`` follows the finished tasks (Spark's status tracker, polled each second)."""
    sc = spark.sparkContext
    rdd = sc.parallelize([s.__dict__ for s in splits], max(1, len(splits)))
    if progress is None:
        return rdd.map(lambda d: fn(Split(**d))).collect()
    group = f"fusionlog-ingest-{uuid.uuid4().hex[:8]}"
    sc.setJobGroup(group, "fusionlog ingest")
    stop, total = threading.Event(), max(1, len(splits))

    def poll() -> None:
        tracker = sc.statusTracker()
        while not stop.wait(1.0):
            done = 0
            for job in tracker.getJobIdsForGroup(group):
                info = tracker.getJobInfo(job)
                for sid in info.stageIds if info else []:
                    st = tracker.getStageInfo(sid)
                    done += st.numCompletedTasks if st else 0
            progress(min(done, total), total)

    progress(0, total)
    t = threading.Thread(target=poll, name="ingest-progress", daemon=True)
    t.start()
    try:
        return rdd.map(lambda d: fn(Split(**d))).collect()
    finally:
        stop.set()
        t.join(timeout=5)
        sc.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
        sc.setLocalProperty("spark.job.description", None)  # type: ignore[arg-type]
        progress(total, total)


def _write_batches(batches, schema: pa.Schema, dest: Path) -> int:  # noqa: ANN001
    """Write batches to one Parquet file atomically (a retried task simply replaces it)."""
    tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp"
    rows = 0
    with pq.ParquetWriter(tmp, schema) as writer:
        for b in batches:
            rows += b.num_rows
            writer.write_batch(b)
    os.replace(tmp, dest)
    return rows


def _parser_factory(system: SystemConfig, cfg: IngestConfig):  # noqa: ANN202
    sys_json, cache = system.model_dump_json(), cfg.mask_cache_size
    holder: dict[str, BatchParser] = {}

    def parser() -> BatchParser:  # built once per task, not per split or line
        if "p" not in holder:
            holder["p"] = BatchParser(SystemConfig.model_validate_json(sys_json), cache)
        return holder["p"]

    return parser


def _line_bases(spark: SparkSession, splits: list[Split]) -> list[Split]:
    multi = [s for s in splits if s.start > 0 or any(t.path == s.path and t.start > 0 for t in splits)]
    if not multi:
        return splits
    rdd = spark.sparkContext.parallelize([(s.split_id, s.path, s.start, s.end) for s in multi], len(multi))
    counts = dict(rdd.map(lambda r: (r[0], count_newlines(r[1], r[2], r[3]))).collect())
    return with_line_bases(splits, counts)


def _mine(scan: DataFrame, miner: TemplateMiner, marks: frozenset[str]) -> tuple[Templates, dict[int, int]]:
    """Drain over the distinct masked messages (in order of first occurrence); returns the mapping.

    A template token is a parameter position when it holds ``<*>`` or a mask placeholder (``marks``).
    """
    distinct = (
        scan.where("kind = 'distinct'")
        .groupBy("masked")
        .agg(F.sum("n").alias("n"), F.min(F.struct("file", "line_no")).alias("first"))
        .orderBy("first.file", "first.line_no")
    )
    msgs, counts = [], []
    for row in distinct.select("masked", "n").toLocalIterator():
        msgs.append(row["masked"])
        counts.append(int(row["n"]))
    ids = [miner.add(m, n) for m, n in zip(msgs, counts, strict=True)]
    per_template: dict[int, int] = {}
    for tid, n in zip(ids, counts, strict=True):
        per_template[tid] = per_template.get(tid, 0) + n
    shape = {}
    for tid in per_template:
        toks = (miner.template_of(tid) or "").split()
        shape[tid] = (tuple(i for i, t in enumerate(toks) if any(m in t for m in marks)), len(toks))
    return {m: (t, *shape[t]) for m, t in zip(msgs, ids, strict=True)}, per_template


def _scan_one(split: Split, parser, max_line: int, utf8: str, dest: str, binary: float) -> int:  # noqa: ANN001
    batches = scan_split(split, parser(), max_line, utf8, binary)
    return _write_batches(batches, SCAN, Path(dest) / f"part-{split.split_id:05d}.parquet")


def _parse_one(split: Split, parser, templates, max_line: int, utf8: str, dest: str,  # noqa: ANN001
               binary: float) -> dict:
    stats: dict = {}
    batches = parse_split(split, parser(), templates.value, max_line, utf8, binary, stats)
    rows = _write_batches(batches, contracts.LINES, Path(dest) / f"part-{split.split_id:05d}.parquet")
    return {"file": split.name, "split": split.split_id, "rows": rows, **stats}


def _timestamp_notes(system: SystemConfig, res: IngestResult, parsed: list[dict]) -> None:
    """Per file, the lines whose timestamp did not parse (``no_timestamp`` in ``res.files``); above
    :data:`TS_FAIL_SHARE` of a file's lines, a warning with the format, a sample line and the count."""
    if system.timestamp is None:
        return
    per_file: dict[str, list] = {}
    for d in sorted(parsed, key=lambda d: d["split"]):
        agg = per_file.setdefault(d["file"], [0, None])
        agg[0] += d.get("no_ts", 0)
        agg[1] = agg[1] or d.get("no_ts_sample")
    for f in res.files:
        failed, sample = per_file.get(f["file"], [0, None])
        f["no_timestamp"] = failed
        if f["parsed"] and failed > TS_FAIL_SHARE * f["parsed"]:
            ts = system.timestamp
            where = f", line {sample[0]}: {sample[1]!r}" if sample else ""
            res.warnings.append(
                f"{Path(f['file']).name}: {failed:,} of {f['parsed']:,} parsed lines ({failed / f['parsed']:.1%}) "
                f"have no timestamp: fields {ts.fields} do not parse as {ts.format!r}{where}; these lines have no "
                f"time (time windows leave them out, windows of them have no start). RFC 3339 / ISO 8601 times: "
                f"format: iso8601")


def _load_miner(state_in: Path | None, own: Path, system: SystemConfig, res: IngestResult) -> TemplateMiner:
    """The template miner to continue from: an explicit state must match; this run's own state is
    dropped (with a note) when the system's Drain settings changed since it was written."""
    if state_in is not None:
        if not state_in.exists():
            raise FileNotFoundError(f"template state not found: {state_in}")
        return TemplateMiner.load(state_in, system.drain)
    if own.exists():
        try:
            return TemplateMiner.load(own, system.drain)
        except ValueError as exc:
            res.notes.append(f"template state not reused: {exc}")
    return TemplateMiner(system.drain)


def _write(df: DataFrame, dest: Path) -> None:
    with atomic_dir(dest) as tmp:
        df.write.mode("overwrite").parquet(str(tmp))


def ingest(
    system: str | SystemConfig,
    inputs: list[str],
    out: Path,
    *,
    labels: list[str] | None = None,
    window: str | None = None,
    state_in: Path | None = None,
    cfg: IngestConfig | None = None,
    spark: SparkSession | None = None,
    progress: Callable[[str], contextlib.AbstractContextManager[Callable[[int, int], None]]] | None = None,
) -> IngestResult:
    """Ingest raw archives of one system into the run directory ``out``.

    ``progress(what)``: a progress bar factory (``fusionlog.console.Reporter.bar``) for the two passes' tasks.
    ``labels``: label files for ``session_list`` systems (e.g. the HDFS anomalous block list).
    ``state_in``: template state of an earlier ingest (keeps its template ids); defaults to this
    run's own saved state when present.
    """
    syscfg = load_system(system) if isinstance(system, str) else system
    cfg = cfg or load_ingest()
    policy = syscfg.window(window)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    clean_temp(out)
    res = IngestResult(syscfg.name, out)
    t0 = time.perf_counter()
    spark = spark or get_spark(cfg.spark)

    bar = progress or Reporter().bar
    files = expand_inputs(inputs)
    work = ingest_scratch(out, syscfg.name)
    shutil.rmtree(work, ignore_errors=True)
    parser = _parser_factory(syscfg, cfg)
    max_line, utf8 = cfg.max_line_bytes, cfg.on_invalid_utf8
    try:
        splits = _plan(spark, files, cfg, work, bar, res)
        # pass 1: distinct masked messages, quarantine and reader counts (small)
        scanned = ingest_scratch(out, syscfg.name, "scan")
        scanned.mkdir(parents=True)
        scan_fn = functools.partial(_scan_one, parser=parser, max_line=max_line, utf8=utf8, dest=str(scanned),
                                    binary=cfg.binary_share)
        with bar(f"ingest {syscfg.name} pass 1 ({len(files)} files, {len(splits)} tasks)") as tick:
            _run_splits(spark, splits, scan_fn, tick)
        scan = spark.read.parquet(str(scanned))
        res.seconds["scan"] = time.perf_counter() - t0

        # templates: Drain over distinct masked messages, state carried from earlier ingests
        t1 = time.perf_counter()
        miner = _load_miner(state_in, state_file(out, syscfg.name), syscfg, res)
        known = set(miner.templates())
        mapping, per_template = _mine(scan, miner, placeholders(syscfg.masks) | {PARAM})
        all_templates = miner.templates()
        res.templates = len(all_templates)
        res.new_templates = len(set(all_templates) - known)
        res.seconds["mine"] = time.perf_counter() - t1

        # pass 2: lines with template ids and params (the mapping is broadcast to the workers)
        t2 = time.perf_counter()
        bc = spark.sparkContext.broadcast(mapping)
        with atomic_dir(table_dir(out, "lines", syscfg.name)) as tmp:
            tmp.mkdir()
            parse_fn = functools.partial(_parse_one, parser=parser, templates=bc, max_line=max_line, utf8=utf8,
                                         dest=str(tmp), binary=cfg.binary_share)
            with bar(f"ingest {syscfg.name} pass 2 (tasks)") as tick:
                parsed = _run_splits(spark, splits, parse_fn, tick)
        bc.unpersist()
        res.seconds["lines"] = time.perf_counter() - t2

        tpl = pa.table(
            {
                "template_id": pa.array(list(all_templates), pa.int64()),
                "template": pa.array([t for t, _ in all_templates.values()], pa.string()),
                "count": pa.array([per_template.get(i, 0) for i in all_templates], pa.int64()),
            },
            schema=contracts.TEMPLATES,
        )
        with atomic_dir(table_dir(out, "templates", syscfg.name)) as tmp:
            tmp.mkdir()
            pq.write_table(tpl, tmp / "part-0.parquet")
        miner.save(state_file(out, syscfg.name))

        # windows and labels
        t3 = time.perf_counter()
        lines = spark.read.parquet(str(table_dir(out, "lines", syscfg.name)))
        ids = None
        if isinstance(syscfg.labels, SessionListLabels):
            if labels:
                ids, res.labels = read_session_list(spark, labels, syscfg.labels)
                if policy.kind != "session":
                    lines = label_lines_by_session(lines, ids, syscfg.labels.unlisted)
            else:
                res.notes.append("no label file given: windows are unlabeled")
        windows = build_windows(lines, policy)
        if ids is not None and policy.kind == "session":
            unl = F.lit(0 if syscfg.labels.unlisted == "normal" else None).cast("tinyint")  # type: ignore[union-attr]
            windows = (
                windows.join(F.broadcast(ids), "session", "left")
                .withColumn("label", F.greatest("label", F.coalesce("anomalous", unl)).cast("tinyint"))
                .drop("anomalous")
            )
        # materialize once: the split quantiles and the write both read it
        staged = ingest_scratch(out, syscfg.name, "windows")
        windows.write.parquet(str(staged))
        windows = spark.read.parquet(str(staged))
        windows = assign_splits(windows, cfg.splits).select(*contracts.WINDOWS.names)
        _write(windows, table_dir(out, "windows", syscfg.name))
        res.seconds["windows"] = time.perf_counter() - t3

        quarantine = scan.where("kind = 'quarantine'").select(*contracts.QUARANTINE.names)
        _write(quarantine, table_dir(out, "quarantine", syscfg.name))

        _reconcile(spark, scan, out, syscfg.name, res, policy.kind)
        _timestamp_notes(syscfg, res, parsed)
        if res.lines > res.windows and res.windows < FEW_WINDOWS:
            res.notes.append(
                f"{res.lines} lines in {res.windows} window{'s' if res.windows != 1 else ''} (window "
                f"{window or syscfg.default_window!r}): every method scores whole windows, so here it can only flag "
                f"(nearly) the whole log; choose a finer window (`windows:` in the system's YAML, or the dataset's "
                f"`window:`, e.g. a time or line window)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res.seconds["total"] = time.perf_counter() - t0
    atomic_write_text(ingest_stats_file(out, syscfg.name), json.dumps(res.to_json(), indent=2))
    return res


def _plan(spark: SparkSession, files: list[InputFile], cfg: IngestConfig, work: Path, bar, res: IngestResult  # noqa: ANN001
          ) -> list[Split]:
    """The splits of ``files``: enough to keep every core busy (2 per core), none larger than ``split_mb``. Among
    too few files for that, a gzip file of at least ``spread_gz_mb`` is first decompressed (one task per file,
    into ``work``) and then cut like a plain file; one that does not decompress cleanly stays one task."""
    slots = 2 * spark.sparkContext.defaultParallelism

    def cut(fs: list[InputFile]) -> list[Split]:
        plain = sum(f.size for f in fs if not f.gz)
        return plan_splits(fs, min(cfg.spark.split_mb << 20, max(8 << 20, plain // max(1, slots))))

    splits = cut(files)
    mb = cfg.spark.spread_gz_mb
    big = [f for f in files if f.gz and mb is not None and f.size >= mb * (1 << 20)] if len(splits) < slots else []
    if not big:
        return _line_bases(spark, splits)
    plain_dir = work / "gunzip"
    plain_dir.mkdir(parents=True)
    jobs = [Split(i, f.path, 0, f.size, True) for i, f in enumerate(big)]
    fn = functools.partial(_gunzip_one, dest=str(plain_dir), binary=cfg.binary_share)
    with bar(f"ingest: decompress {len(big)} gzip file(s) to spread them over the cores") as tick:
        done = {d["source"]: d for d in _run_splits(spark, jobs, fn, tick)}
    copies = {p: InputFile(d["path"], d["size"], False) for p, d in done.items() if d["clean"]}
    kept = [p for p, d in done.items() if not d["clean"]]
    if kept:
        res.notes.append(f"{len(kept)} gzip file(s) read as one task each (they do not decompress cleanly): "
                         + ", ".join(Path(p).name for p in kept))
    origin = {c.path: p for p, c in copies.items()}  # plain copy -> its gzip file
    out: list[Split] = []
    for s in cut([copies.get(f.path, f) for f in files]):
        orig = origin.get(s.path, "")
        out.append(Split(len(out), s.path, s.start, s.end, s.gz, source=orig,
                         layers=done[orig]["layers"] if orig else 0))
    return _line_bases(spark, out)


def _gunzip_one(split: Split, dest: str, binary: float) -> dict:
    return gunzip_split(split, str(Path(dest) / f"{split.split_id:05d}.log"), binary)


def _reconcile(
    spark: SparkSession, scan: DataFrame, out: Path, system: str, res: IngestResult, kind: str
) -> None:
    """Per file: read (the reader's own count) must equal parsed + quarantined (counted in outputs)."""
    reader: dict[str, dict] = {}
    for row in scan.where("kind = 'stats'").select("file", "stats").collect():
        s = json.loads(row["stats"])
        agg = reader.setdefault(row["file"], {"read": 0, "replaced_utf8": 0, "cr_line_ends": 0, "gz_layers": 0,
                                              "binary": False, "reasons": {}, "errors": []})
        agg["read"] += s["read"]
        agg["replaced_utf8"] += s["replaced_utf8"]
        agg["cr_line_ends"] += s.get("cr_line_ends", 0)
        agg["gz_layers"] = max(agg["gz_layers"], s.get("gz_layers", 0))
        agg["binary"] = agg["binary"] or s.get("binary", False)
        agg["errors"].extend(s["errors"])
        for k, v in s["reasons"].items():
            agg["reasons"][k] = agg["reasons"].get(k, 0) + v
    lines = spark.read.parquet(str(table_dir(out, "lines", system)))
    quar = spark.read.parquet(str(table_dir(out, "quarantine", system)))
    per_file = lines.groupBy("file").agg(
        F.count(F.lit(1)).alias("n"),
        F.sum((F.size("sessions") == 0).cast("int")).alias("no_session"),
        F.sum(F.col("ts").isNull().cast("int")).alias("no_ts"),
    ).collect()
    parsed = {r["file"]: r["n"] for r in per_file}
    quarantined = {r["file"]: r["count"] for r in quar.groupBy("file").count().collect()}
    windows = spark.read.parquet(str(table_dir(out, "windows", system)))
    wstats = windows.agg(F.count(F.lit(1)).alias("n"), F.sum("label").alias("anom")).first()
    res.windows = int(wstats["n"])
    res.anomalous_windows = None if wstats["anom"] is None else int(wstats["anom"])
    outside = {"session": "no_session", "time": "no_ts"}.get(kind)
    res.lines_outside_windows = sum(r[outside] for r in per_file) if outside else 0
    bad = []
    for path, agg in sorted(reader.items()):
        p, q = parsed.get(path, 0), quarantined.get(path, 0)
        res.files.append({"file": path, "read": agg["read"], "parsed": p, "quarantined": q, **agg})
        res.lines += p
        res.quarantined += q
        name = Path(path).name
        if agg["cr_line_ends"]:
            res.notes.append(f"{name}: {agg['cr_line_ends']} lines end with a lone CR (old Mac line ends), "
                             "each read as a line end")
        if agg["gz_layers"] > 1:
            res.notes.append(f"{name}: gzip inside gzip, {agg['gz_layers']} layers decompressed")
        if agg["read"] != p + q:
            bad.append(f"{path}: read {agg['read']} != parsed {p} + quarantined {q}")
    if bad:
        raise ReconcileError("line counts do not reconcile:\n" + "\n".join(bad))

"""``fusionlog bench ingest``: Spark ingest vs single-process Drain3 on the same synthetic archive.

Each side runs in its own subprocess; the parent samples the resident memory of that process and all
its children (the Spark JVM and its Python workers included) every 0.1 s and keeps the peak. Lines/s
of the Spark side is given with and without the one-off Spark session start-up. With ``gzip`` every side
reads one ``.gz`` of the archive, and Spark runs twice: as configured (a large gzip decompressed once and
spread over the cores) and with ``spread_gz_mb: null`` (the file in one task), the baseline of the spreading.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

console = Console(width=160)


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def _measure(cmd: list[str]) -> tuple[dict, float]:
    """Run ``cmd`` (which prints one JSON line last); return its JSON and the peak tree RSS in MB."""
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL)
        ps = psutil.Process(proc.pid)
        peak = 0
        while proc.poll() is None:
            try:
                peak = max(peak, _tree_rss(ps))
            except psutil.Error:
                pass
            time.sleep(0.1)
        out.seek(0)
        lines = [ln for ln in out.read().splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark worker failed ({proc.returncode}): {' '.join(cmd)}")
    return json.loads(lines[-1]), peak / 2**20


def _worker(side: str, path: str, system: str, master: str, labels: str | None) -> None:
    """Entry point of a measured subprocess: runs one side and prints its figures as JSON."""
    if side == "drain3":
        from fusionlog.bench.drain3_baseline import run_drain3_baseline

        r = run_drain3_baseline(Path(path), system)
        print(json.dumps({"lines": r["lines"], "seconds": r["seconds"], "templates": r["n_templates"]}))
        return
    from fusionlog.config import SparkConfig, load_ingest
    from fusionlog.ingest.stage import ingest
    from fusionlog.spark import get_spark

    t0 = time.perf_counter()
    cfg = load_ingest()
    spread = {"spread_gz_mb": None} if side == "spark-one-task" else {}
    cfg = cfg.model_copy(update={"spark": SparkConfig(**{**cfg.spark.model_dump(), "master": master, **spread})})
    spark = get_spark(cfg.spark)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as run:
        res = ingest(system, [path], Path(run), labels=[labels] if labels else None, cfg=cfg, spark=spark)
    t2 = time.perf_counter()
    print(json.dumps({"lines": res.lines, "seconds": t2 - t1, "startup": t1 - t0, "templates": res.templates,
                      "windows": res.windows, "stages": res.seconds}))


def run(
    sizes: list[int],
    system: str = "HDFS",
    workdir: Path = Path("runs/bench"),
    out: Path | None = None,
    master: str = "local[*]",
    gzip: bool = False,
) -> list[dict]:
    """Measure both sides on synthetic archives of each size (``gzip``: one ``.gz`` of each, Spark with and
    without spreading it); print a table, optionally write JSON."""
    from fusionlog.bench.synth import synth

    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in sizes:
        archive = workdir / f"{system}_{n}.log"
        if not archive.exists():
            console.print(f"synthesizing {n:,} {system} lines -> {archive}")
            synth(system, n, archive)
        labels = Path(str(archive) + ".anomalous_blocks")
        label_arg = str(labels) if labels.exists() else ""
        if gzip:
            packed = archive.with_name(archive.name + ".gz")
            if not packed.exists():
                console.print(f"compressing {archive} -> {packed}")
                subprocess.run(["gzip", "-k", "-f", str(archive)], check=True)
            archive = packed
        me = [sys.executable, "-m", "fusionlog.bench.ingest"]
        console.print(f"[{n:,} lines] single-process Drain3 ...")
        d3, d3_rss = _measure([*me, "drain3", str(archive), system, master, label_arg])
        console.print(f"[{n:,} lines] Spark ingest ({master}) ...")
        sp, sp_rss = _measure([*me, "spark", str(archive), system, master, label_arg])
        extra = {}
        if gzip:
            console.print(f"[{n:,} lines] Spark ingest ({master}), the gzip in one task ...")
            one, one_rss = _measure([*me, "spark-one-task", str(archive), system, master, label_arg])
            extra = {"gzip": True, "spark_one_task_lines_per_s": one["lines"] / one["seconds"],
                     "spark_one_task_peak_rss_mb": one_rss, "spread_gain": one["seconds"] / sp["seconds"]}
        rows.append({
            **extra,
            "lines": n, "bytes": archive.stat().st_size,
            "drain3_lines_per_s": d3["lines"] / d3["seconds"], "drain3_peak_rss_mb": d3_rss,
            "drain3_templates": d3["templates"],
            "spark_lines_per_s": sp["lines"] / sp["seconds"],
            "spark_lines_per_s_with_startup": sp["lines"] / (sp["seconds"] + sp["startup"]),
            "spark_peak_rss_mb": sp_rss, "spark_templates": sp["templates"], "spark_stages_s": sp["stages"],
            "ratio": (sp["lines"] / sp["seconds"]) / (d3["lines"] / d3["seconds"]),
        })
    _print(rows, master)
    for r in rows:
        if r.get("gzip"):
            console.print(f"{r['lines']:,} lines, one .gz of {r['bytes'] / 2**20:,.0f} MB: spread "
                          f"{r['spark_lines_per_s']:,.0f} lines/s vs one task {r['spark_one_task_lines_per_s']:,.0f} "
                          f"(x{r['spread_gain']:.2f}); peak RSS {r['spark_peak_rss_mb']:,.0f} vs "
                          f"{r['spark_one_task_peak_rss_mb']:,.0f} MB")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"system": system, "master": master, "cores": psutil.cpu_count(),
                                   "rows": rows}, indent=2))
    return rows


def _print(rows: list[dict], master: str) -> None:
    t = Table(title=f"ingest: Spark ({master}) vs single-process Drain3, same archive, same masks")
    for c in ("lines", "Drain3 lines/s", "Spark lines/s", "ratio", "Spark incl. start-up",
              "Drain3 peak RSS", "Spark peak RSS", "Spark stages (s)"):
        t.add_column(c, justify="right")
    for r in rows:
        st = r["spark_stages_s"]
        t.add_row(f"{r['lines']:,}", f"{r['drain3_lines_per_s']:,.0f}", f"{r['spark_lines_per_s']:,.0f}",
                  f"{r['ratio']:.2f}x", f"{r['spark_lines_per_s_with_startup']:,.0f}",
                  f"{r['drain3_peak_rss_mb']:,.0f} MB", f"{r['spark_peak_rss_mb']:,.0f} MB",
                  " ".join(f"{k} {v:.0f}" for k, v in st.items() if k != "total"))
    console.print(t)
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        sp = b["spark_peak_rss_mb"] / a["spark_peak_rss_mb"]
        d3 = b["drain3_peak_rss_mb"] / a["drain3_peak_rss_mb"]
        console.print(f"peak RSS growth {a['lines']:,} -> {b['lines']:,} lines: Spark x{sp:.2f}, Drain3 x{d3:.2f}")


if __name__ == "__main__":
    _side, _path, _system, _master, _labels = sys.argv[1:6]
    _worker(_side, _path, _system, _master, _labels or None)

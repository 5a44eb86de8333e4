"""``fusionlog bench backfill``: the whole transfer (ingest -> ... -> report) on synthetic archives of growing size.

For each target system and size, ``fusionlog synth`` writes a compressed archive from the system's real templates
(HDFS: labeled blocks; BGL: lines with their own label field), and ``fusionlog run`` transfers to it from a shipped
labeled source of another system (HDFS <- BGL_2k lines, BGL <- HDFS sequences), in a fresh run directory, as a
subprocess. The parent samples the memory of that process and all its children (Spark's JVM, Ray's workers, the
LLM replica) every 0.5 s, as proportional set size (shared pages count once), and charges each sample to the stage
running then (the first one without its ``stages/<stage>.json`` marker). Per stage: wall time (the marker's), peak
memory, the run directory's size after it; per run: lines, windows, events, LLM questions and the LLM's share of
the wall time. The first size is the baseline each later one is compared with. Synthetic content: for cost, never
for accuracy figures.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml
from rich.console import Console
from rich.table import Table

from fusionlog.io import atomic_write_text
from fusionlog.pipeline import STAGES
from fusionlog.rundir import ingest_stats_file, stage_marker

console = Console(width=160)
REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"
# each target's labeled source: shipped data of another system, with another kind of window
SOURCES: dict[str, tuple[str, dict]] = {
    "HDFS": ("BGL", {"kind": "raw", "inputs": [str(DATA / "loghub_2k/BGL/BGL_2k.log.gz")], "window": "line"}),
    "BGL": ("HDFS", {"kind": "sequences", "templates": str(DATA / "HDFS/HDFS_templates.csv"),
                     "sequences": [f"{DATA / 'HDFS/hdfs_train.gz'}:normal",
                                   f"{DATA / 'HDFS/hdfs_test_abnormal.gz'}:anomalous"]}),
}


def tree_pss(proc: psutil.Process) -> int:
    """Proportional set size of ``proc`` and all its descendants: a page shared by n of them counts 1/n in each
    (a sum of RSS counts the LLM's weights and Ray's shared object store once per process that maps them)."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_full_info().pss
        except (psutil.Error, AttributeError):  # gone meanwhile, or no PSS on this platform: its RSS
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
    return total


def disk_bytes(root: Path) -> int:
    total = 0
    for d, _, files in os.walk(root):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(d, f))
            except OSError:  # a temporary file renamed away meanwhile
                pass
    return total


def experiment(system: str, archive: Path, n: int, out: Path, llm: dict | None) -> Path:
    """The experiment YAML of one backfill: ``system``'s synthetic archive as the target of its shipped source."""
    if system not in SOURCES:
        raise ValueError(f"no backfill source for {system!r}: one of {sorted(SOURCES)}")
    source, spec = SOURCES[system]
    target: dict = {"kind": "raw", "inputs": [str(archive)]}
    labels = Path(f"{archive}.anomalous_blocks")  # fusionlog synth's session labels (HDFS), beside the archive
    if labels.exists():
        target["labels"] = [str(labels)]
    exp = {"name": f"backfill_{system}_{n}", "description": f"{source} -> {n:,} synthetic {system} lines (bench)",
           "datasets": {source: spec, system: target}, "sources": [source], "target": system,
           "run": {"compare": ["fusionlog-vote", "fusionlog-distilled", "llm-events"]}, "distill": {"rounds": 2}}
    if llm:
        exp["llm"] = llm
    path = out / f"{exp['name']}.yaml"
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    return path


def follow(cmd: list[str], run: Path, log: Path, timeout_s: float) -> dict[str, dict]:
    """Run ``cmd`` (a ``fusionlog run`` into ``run``); per stage its peak tree memory (PSS) and the run's size after
    it."""
    stages: dict[str, dict] = {s: {"peak_rss_mb": 0.0} for s in STAGES}
    done: set[str] = set()
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)
    ps, end = psutil.Process(proc.pid), time.monotonic() + timeout_s
    while proc.poll() is None:
        try:
            rss = tree_pss(ps) / 2**20
        except psutil.Error:
            rss = 0.0
        for s in STAGES:
            if s not in done and stage_marker(run, s).exists():
                done.add(s)
                stages[s]["disk_mb"] = disk_bytes(run) / 2**20
        now = next((s for s in STAGES if s not in done), None)
        if now:
            stages[now]["peak_rss_mb"] = max(stages[now]["peak_rss_mb"], rss)
        if time.monotonic() > end:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            raise TimeoutError(f"backfill run exceeded {timeout_s:.0f} s in stage {now}: {log}")
        time.sleep(0.5)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"backfill run failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")
    for s in STAGES:
        meta = json.loads(stage_marker(run, s).read_text())
        stages[s]["seconds"] = float(meta["seconds"])
        stages[s].setdefault("disk_mb", disk_bytes(run) / 2**20)
        stages[s]["summary"] = meta.get("summary")
    return stages


def _llm_calls(stages: dict[str, dict]) -> dict[str, int]:
    judge = stages["judge"]["summary"] or {}
    srcs = judge.get("sources") or {}
    rounds = (stages["distill"]["summary"] or {}).get("rounds") or []
    return {"target_events": int(judge.get("asked", 0)), "triage": int(judge.get("triage_asked", 0)),
            "source_events": sum(int(v.get("asked", 0)) for v in srcs.values()),
            "distill": sum(int(r.get("llm_calls", 0)) for r in rounds)}


def run(sizes: list[int], systems: list[str], workdir: Path = Path("runs/bench"), out: Path | None = None,
        llm: dict | None = None, timeout_s: float = 4 * 3600, keep: bool = False) -> list[dict]:
    """Backfill each system at each size; print a table per system and the growth from the first size."""
    from fusionlog.bench.synth import synth

    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    me = [str(Path(sys.executable).parent / "fusionlog"), "run"]
    for system in systems:
        for n in sizes:
            archive = workdir / f"backfill_{system}_{n}.log.gz"  # its own name: never another bench's archive
            labels = Path(f"{archive}.anomalous_blocks")
            if not archive.exists() or (system == "HDFS" and not labels.exists()):
                console.print(f"synthesizing {n:,} {system} lines -> {archive}")
                synth(system, n, archive)
            run_dir = workdir / f"backfill_{system}_{n}.run"
            shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run: finished stages would be skipped
            run_dir.mkdir()
            exp = experiment(system, archive, n, run_dir, llm)
            console.print(f"[{system}, {n:,} lines] fusionlog run ({run_dir}) ...")
            t0 = time.perf_counter()
            stages = follow([*me, str(exp), "--run", str(run_dir)], run_dir, run_dir / "bench.log", timeout_s)
            wall = time.perf_counter() - t0
            ing = json.loads(ingest_stats_file(run_dir, system).read_text())
            calls = _llm_calls(stages)
            rows.append({"system": system, "lines": n, "archive_mb": archive.stat().st_size / 2**20,
                         "parsed_lines": ing["lines"], "windows": ing["windows"], "templates": ing["templates"],
                         "anomalous_windows": ing["anomalous_windows"],
                         "wall_s": wall, "llm_calls": calls, "llm_share": stages["judge"]["seconds"] / wall,
                         "peak_rss_mb": max(s["peak_rss_mb"] for s in stages.values()),
                         "stages": {k: {m: v for m, v in s.items() if m != "summary"} for k, s in stages.items()}})
            if not keep:
                shutil.rmtree(run_dir, ignore_errors=True)
            if out:  # after every run: a long backfill keeps what it measured
                out.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(out, json.dumps({"cores": psutil.cpu_count(), "rows": rows}, indent=2))
    _print(rows)
    return rows


def _mb(x: float) -> str:
    return f"{x:,.0f}" if x else "-"  # "-": the stage ended between two samples


def _print(rows: list[dict]) -> None:
    for system in dict.fromkeys(r["system"] for r in rows):
        mine = [r for r in rows if r["system"] == system]
        t = Table(title=f"backfill: {SOURCES[system][0]} -> synthetic {system}, whole transfer per size "
                        "(wall s / peak memory MB, PSS / run dir MB after the stage)")
        t.add_column("stage")
        for r in mine:
            t.add_column(f"{r['lines']:,} lines", justify="right")
        for s in STAGES:
            t.add_row(s, *(f"{r['stages'][s]['seconds']:,.0f} s / {_mb(r['stages'][s]['peak_rss_mb'])} / "
                           f"{r['stages'][s]['disk_mb']:,.0f}" for r in mine))
        t.add_row("total", *(f"{r['wall_s']:,.0f} s / {r['peak_rss_mb']:,.0f}" for r in mine))
        t.add_row("windows (anomalous) / events", *(f"{r['windows']:,} ({r['anomalous_windows'] or 0:,}) / "
                                                     f"{r['templates']:,}" for r in mine))
        t.add_row("LLM questions", *(" + ".join(f"{v} {k}" for k, v in r["llm_calls"].items() if v) or "0"
                                     for r in mine))
        t.add_row("LLM share of wall", *(f"{r['llm_share']:.0%}" for r in mine))
        console.print(t)
        base = mine[0]
        for r in mine[1:]:
            wall, rss = r["wall_s"] / base["wall_s"], r["peak_rss_mb"] / base["peak_rss_mb"]
            console.print(f"{system} {base['lines']:,} -> {r['lines']:,} lines (x{r['lines'] / base['lines']:.0f}): "
                          f"wall x{wall:.2f}, peak memory x{rss:.2f}, "
                          f"LLM questions {sum(base['llm_calls'].values())} -> {sum(r['llm_calls'].values())}")

"""Severity's flags on the unlabeled sweep's systems with levels, read per line and per event's most frequent level.

Usage (from the repository root, after docs/results/sweep_unlabeled.sh and `fusionlog run hdfs_to_zookeeper --run
runs/explore/zk`): python docs/results/sweep_severity_lines.py. Reads each run's lines/ and event_scores/ only.
"""
import glob

import pyarrow.dataset as ds
import pyarrow.parquet as pq

from fusionlog.config import load_system
from fusionlog.events import normalize_level
from fusionlog.methods.severity import SCORE

RUNS = {"Zookeeper": "runs/explore/zk", **{s: f"runs/explore/sweep/{s}" for s in ("Android", "Apache", "Spark",
                                                                                  "Windows")}}
for system, run in RUNS.items():
    levels = dict(load_system(system).levels)
    lines = ds.dataset(f"{run}/lines", partitioning="hive").to_table().to_pandas()
    ev = pq.read_table(glob.glob(f"{run}/event_scores/system={system}/*.parquet")[0]).to_pandas()
    llm = lines.template_id.map(dict(zip(ev.template_id, ev.score, strict=True))).fillna(0) >= 0.5
    lines["line"] = [SCORE[normalize_level(x, levels)] for x in lines.level]
    lines["event"] = lines.template_id.map(lines.groupby("template_id").line.agg(lambda x: x.mode().max()))
    per = {k: int((lines[k] >= SCORE["error"]).sum()) for k in ("line", "event")}
    fused = {k: int(((lines[k] >= SCORE["error"]) & llm).sum()) for k in ("line", "event")}
    print(f"{system:10s} lines {len(lines)}, LLM view {int(llm.sum())}, severity per line {per['line']} "
          f"(per event {per['event']}), fusion per line {fused['line']} (per event {fused['event']})")

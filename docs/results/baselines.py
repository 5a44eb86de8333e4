"""Label-free baselines on the shipped targets (labels read only to score them)."""
import json
import tempfile
from pathlib import Path

import numpy as np

from fusionlog.evaluate.metrics import binary_metrics
from fusionlog.ingest.sequences import ingest_sequences, parse_spec
from fusionlog.ingest.stage import ingest
from fusionlog.methods.invariants import breaks, mine_invariants
from fusionlog.methods.keywords import keyword_scores
from fusionlog.methods.new_events import new_event_scores
from fusionlog.methods.pca import pca_scores
from fusionlog.methods.rarity import rarity_scores
from fusionlog.methods.severity import severity_scores
from fusionlog.train.data import read_windows

d = Path("data")
OUT: list[dict] = []


def templates(run, system):
    import pyarrow.parquet as pq

    t = pq.read_table(run / "templates" / f"system={system}", columns=["template_id", "template"])
    return dict(zip(t["template_id"].to_pylist(), t["template"].to_pylist(), strict=True))


def show(name, ids, y, tpl, levels=None, starts=None):
    rows = {"all-anomalous": np.ones(len(y)), "rarity": rarity_scores(ids), "pca": pca_scores(ids)[0],
            "invariants": 1.0 - 0.5 ** breaks(ids, mine_invariants(ids)).count, "keywords": keyword_scores(ids, tpl)}
    new = new_event_scores(ids, starts) if starts is not None else None
    rows["new-events"] = np.zeros(len(y)) if new is None else new[0]  # no time (a sequence set): flags nothing
    if levels is not None:
        rows["severity"] = severity_scores(levels)
    for m, s in rows.items():
        r = binary_metrics(y, s, 0.5)
        print(f"| {name} | {m} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['pr_auc']:.3f} |")
        OUT.append({"target": name, "method": m, **{k: r[k] for k in ("precision", "recall", "f1", "pr_auc",
                                                                       "balanced_accuracy", "n", "positives")}})
with tempfile.TemporaryDirectory() as tmp:
    run = Path(tmp)
    ingest_sequences("HDFS", d / "HDFS/HDFS_templates.csv", [parse_spec(f"{d}/HDFS/hdfs_train.gz:normal"),
                     parse_spec(f"{d}/HDFS/hdfs_test_abnormal.gz:anomalous:0.01")], run)
    t = read_windows(run, "HDFS", ["template_ids", "label"])
    show("HDFS sequences, natural rate (5,759 blocks, 176 anomalous)", t["template_ids"].to_pylist(),
         np.array(t["label"].to_pylist()), templates(run, "HDFS"))
    ingest("BGL", [str(d / "loghub_2k/BGL/BGL_2k.log.gz")], run, window="line")
    t = read_windows(run, "BGL", ["window_id", "template_ids", "levels", "label", "start_ts"])
    show("BGL_2k lines (2,000, 143 alerts)", t["template_ids"].to_pylist(), np.array(t["label"].to_pylist()),
         templates(run, "BGL"), t["levels"], t["start_ts"].to_pylist())

Path("docs/results/baselines.json").write_text(json.dumps(
    {"command": "python docs/results/baselines.py", "threshold": 0.5, "rows": OUT}, indent=2, default=float))

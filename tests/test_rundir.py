"""``llm_labels/`` has one schema and one writer: each writer replaces only the rows of its own purpose, so
``fusionlog label`` into a run does not erase the verdicts its detect stage reads (it used to, with a second
schema that broke detect)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fusionlog.llm.client import Verdict
from fusionlog.rundir import VERDICTS, llm_labels_dir, read_verdicts, verdict_rows, write_verdicts


def test_writers_replace_only_their_own_purpose(tmp_path: Path) -> None:
    v = Verdict(label="anomalous", confidence=0.8, reason="r")
    a, b = verdict_rows({"w1": v, "w2": None}, "llm-only"), verdict_rows({"w1": v}, "generallog")
    write_verdicts(tmp_path, "BGL", {k: a[k] + b[k] for k in a})
    write_verdicts(tmp_path, "BGL", verdict_rows({"w1": None, "w2": v}, "label", {"w1": "s1", "w2": "s2"}))
    t = read_verdicts(tmp_path, "BGL").to_pandas()
    assert sorted(t["purpose"]) == ["generallog", "label", "label", "llm-only", "llm-only"]
    lab = t[t.purpose == "label"].set_index("window_id")
    assert lab.loc["w1", "label"] is None and lab.loc["w2", "signature"] == "s2"
    write_verdicts(tmp_path, "BGL", verdict_rows({"w3": v}, "label"))  # a second `label` replaces the first
    t = read_verdicts(tmp_path, "BGL").to_pandas()
    assert t[t.purpose == "label"]["window_id"].tolist() == ["w3"] and len(t) == 4


def test_an_older_label_table_is_read_as_purpose_label(tmp_path: Path) -> None:
    d = llm_labels_dir(tmp_path, "BGL")
    d.mkdir(parents=True)
    pq.write_table(pa.table({"window_id": ["w"], "signature": ["s"], "label": ["normal"],
                             "confidence": pa.array([0.9], pa.float32()), "reason": ["x"], "abstained": [False]}),
                   d / "part-0.parquet")
    t = read_verdicts(tmp_path, "BGL")
    assert t.schema == VERDICTS and t["purpose"].to_pylist() == ["label"]

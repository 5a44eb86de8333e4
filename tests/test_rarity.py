"""The rarity baseline on real HDFS blocks: the rarer a block's rarest event among the target's blocks, the higher
its score; the shared threshold (0.5) flags exactly the blocks with an event in fewer than 1 % of the blocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fusionlog.methods import get, names
from fusionlog.methods.rarity import RARE, rarity_scores


def test_rarity_is_registered_as_a_baseline() -> None:
    assert "rarity" in names() and get("rarity").baseline


def test_rarity_flags_blocks_with_rare_events_on_real_hdfs(data: Path, tmp_path: Path) -> None:
    from fusionlog.ingest.sequences import ingest_sequences, parse_spec
    from fusionlog.train.data import read_windows

    ingest_sequences("HDFS", data / "HDFS/HDFS_templates.csv",
                     [parse_spec(f"{data}/HDFS/hdfs_train.gz:normal"),
                      parse_spec(f"{data}/HDFS/hdfs_test_abnormal.gz:anomalous:0.05")], tmp_path)
    t = read_windows(tmp_path, "HDFS", ["template_ids", "label"])
    ids, y = t["template_ids"].to_pylist(), np.array(t["label"].to_pylist())
    s = rarity_scores(ids)
    n = len(ids)
    df = {e: sum(e in set(w) for w in ids) / n for e in {e for w in ids for e in w}}
    rare = np.array([min(df[e] for e in w) < RARE for w in ids])
    assert np.array_equal(s >= 0.5, rare)  # the threshold means "an event in < 1 % of the blocks"
    assert s[y == 1].mean() > s[y == 0].mean()  # label-free, and it ranks anomalous blocks higher
    assert rarity_scores([[1, 2], [1, 2], [1, 3]], rare=0.5)[2] == pytest.approx(1 / (1 + (1 / 3) / 0.5))

"""Detection metrics and the data checks of the evaluation, on cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from fusionlog.evaluate.data_checks import signature_ceiling
from fusionlog.evaluate.metrics import average_precision, binary_metrics


def test_average_precision_by_hand() -> None:
    # positives at ranks 1 and 3: (1/1 + 2/3) / 2
    assert average_precision(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1])) == pytest.approx(5 / 6)
    # a tie shares its rank: one positive among two equal scores -> precision 1/2
    assert average_precision(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert average_precision(np.array([0, 1, 1]), np.array([0.1, 0.9, 0.8])) == pytest.approx(1.0)
    assert np.isnan(average_precision(np.array([0, 0]), np.array([0.1, 0.2])))


def test_binary_metrics_by_hand() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    s = np.array([0.9, 0.6, 0.2, 0.7, 0.1, 0.1, 0.3, 0.4])
    m = binary_metrics(y, s, 0.5)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 4)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3) and m["balanced_accuracy"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    flag_all = binary_metrics(y, np.ones(len(y)))
    p = 3 / 8
    assert flag_all["f1"] == pytest.approx(2 * p / (1 + p)) and flag_all["recall"] == 1.0


def test_signature_ceiling_by_hand() -> None:
    # (1,2): 3 anomalous + 1 normal; (3,): 1 anomalous + 3 normal; (4,): 2 normal
    labels = [1, 1, 1, 0, 1, 0, 0, 0, 0, 0]
    sigs = [(1, 2)] * 4 + [(3,)] * 4 + [(4,)] * 2
    c = signature_ceiling(labels, sigs)
    # flag (1,2) only: tp 3, fp 1, fn 1 -> F1 0.75; flag (1,2) and (3,): tp 4, fp 4 -> F1 2/3
    assert c["best_f1"] == pytest.approx(0.75) and c["distinct"] == 3 and c["windows_in_conflict"] == 2


def test_evaluate_on_an_unlabeled_system(spark, data, tmp_path) -> None:  # noqa: ANN001
    """The default use: a system nobody labeled (Zookeeper_2k, ingested for real: every label is null). Evaluation
    finds no labeled window and writes a run.json that says so, instead of failing on the empty selection."""
    import json

    from fusionlog.config import load_experiment
    from fusionlog.contracts import SCORES
    from fusionlog.evaluate.run_metrics import evaluate_run, labeled
    from fusionlog.ingest.stage import ingest
    from fusionlog.modes import write_scores
    from fusionlog.rundir import run_metrics_file
    from fusionlog.train.data import read_windows

    ingest("Zookeeper", [str(data / "loghub_2k/Zookeeper/Zookeeper_2k.log.gz")], tmp_path, spark=spark)
    ids, y, ceiling = labeled(tmp_path, "Zookeeper")
    assert ids == [] and len(y) == 0 and ceiling == {}
    exp = load_experiment("hdfs_to_zookeeper")
    wid = read_windows(tmp_path, "Zookeeper", ["window_id", "start_ts", "first_file", "first_line"])["window_id"]
    n = len(wid)
    for mode, flag in (("all-anomalous", np.ones(n)), ("rarity", np.arange(n) % 4 == 0)):  # what each flags
        write_scores(tmp_path, mode, "Zookeeper", pa.table(
            {"window_id": wid, "score": flag.astype(np.float64), "label": flag.astype(np.int8),
             "route": ["general"] * n, "scorer": [mode] * n, "round": pa.nulls(n, pa.int16()),
             "flagged_by": pa.nulls(n, SCORES.field("flagged_by").type),
             "evidence": pa.nulls(n, SCORES.field("evidence").type)}, schema=SCORES))
    out = evaluate_run(tmp_path, exp, ["all-anomalous", "rarity"], [])
    doc = json.loads(run_metrics_file(tmp_path).read_text())
    assert out.labeled == 0 and out.f1 == {} and doc["labeled"] == 0 and doc["methods"] == {}
    assert out.windows == doc["windows"] == n == 2000  # one window per line
    assert out.flagged == doc["flagged"] == {"all-anomalous": 2000, "rarity": 500}
    assert doc["event_ranking"] is None and doc["views_rounds"] == []

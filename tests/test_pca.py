"""The count-vector PCA baseline (Q-statistic cut) on real HDFS blocks at the natural anomaly rate (≈ 3 %): it finds
most anomalous blocks without labels, as loglizer's PCA does (F1 0.77 on full HDFS; labels read by the test only)."""

from __future__ import annotations

import numpy as np

from fusionlog.methods import get
from fusionlog.methods.pca import pca_scores, q_statistic


def test_pca_flags_hdfs_anomalies_beyond_the_q_statistic(hdfs_natural: tuple[list, list]) -> None:
    from fusionlog.evaluate.metrics import binary_metrics

    y = np.array(hdfs_natural[1])
    s, q = pca_scores(hdfs_natural[0])
    m = binary_metrics(y, s, 0.5)
    assert 0.02 < y.mean() < 0.05 and q > 0 and get("pca").baseline
    assert m["precision"] > 0.9 and m["f1"] > 0.7, m  # flagging every block: F1 ≈ 0.06


def test_q_statistic_grows_with_the_residual_variance() -> None:
    lam = np.array([0.5, 0.3, 0.2])
    assert 0 < q_statistic(lam) < q_statistic(2 * lam) and q_statistic(np.zeros(3)) == 0.0

"""Detection metrics and the data checks of the evaluation, on cases worked out by hand."""

from __future__ import annotations

import numpy as np
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

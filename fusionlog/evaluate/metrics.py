"""Binary detection metrics (anomalous = positive class), in numpy."""

from __future__ import annotations

import numpy as np


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """PR-AUC as average precision: sum over positives of the precision at their rank (ties share a rank)."""
    y = np.asarray(y).astype(bool)
    pos = int(y.sum())
    if pos == 0:
        return float("nan")
    order = np.argsort(-np.asarray(score, np.float64), kind="stable")
    s, ys = np.asarray(score, np.float64)[order], y[order]
    tp = np.cumsum(ys)
    last = np.r_[s[1:] != s[:-1], True]  # last row of each group of tied scores
    tp_at, n_at = tp[last], np.flatnonzero(last) + 1
    recall_step = np.diff(np.r_[0, tp_at]) / pos
    return float((recall_step * tp_at / n_at).sum())


def best_f1(y: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """(the best F1 over every cut of ``score``, that cut): an ORACLE, it reads the labels to choose the cut."""
    y = np.asarray(y).astype(bool)
    pos = int(y.sum())
    if pos == 0 or not len(y):
        return float("nan"), float("nan")
    s = np.asarray(score, np.float64)
    order = np.argsort(-s, kind="stable")
    s, ys = s[order], y[order]
    last = np.r_[s[1:] != s[:-1], True]
    tp, n = np.cumsum(ys)[last], np.flatnonzero(last) + 1
    f1 = 2 * tp / (n + pos)
    i = int(np.argmax(f1))
    return float(f1[i]), float(s[last][i])


def binary_metrics(y: np.ndarray, score: np.ndarray, threshold: float = 0.5,
                   pred: np.ndarray | None = None) -> dict[str, float]:
    """Precision, recall, F1 (at ``threshold``, or of the given labels ``pred``: a method's own cut), PR-AUC,
    balanced accuracy, the confusion counts, and the oracle best F1 over all cuts (``best_f1``, ``best_cut``)."""
    y = np.asarray(y).astype(bool)
    pred = np.asarray(score) >= threshold if pred is None else np.asarray(pred).astype(bool)
    tp, fp = int((pred & y).sum()), int((pred & ~y).sum())
    fn, tn = int((~pred & y).sum()), int((~pred & ~y).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    tnr = tn / (tn + fp) if tn + fp else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "pr_auc": average_precision(y, score),
            "balanced_accuracy": (recall + tnr) / 2 if tp + fn and tn + fp else float("nan"),
            **dict(zip(("best_f1", "best_cut"), best_f1(y, score), strict=True)),
            "tp": tp, "fp": fp, "fn": fn, "tn": tn, "n": int(len(y)), "positives": int(y.sum())}

"""Distillation on the agreeing views: the schedule reaches its floor, per-class cuts keep each class, the pool
grows, the views' strict majority is the candidate rule (the rounds themselves run in tests/test_pipeline.py)."""

from __future__ import annotations

import numpy as np

from fusionlog.config import DistillConfig
from fusionlog.distill.views import agreed, candidates, class_confidence, keep, polarity_auc, schedule
from fusionlog.methods.distilled import top_k


def test_the_schedule_reaches_the_floor_in_the_last_round() -> None:
    s = schedule(DistillConfig(rounds=3, epsilon=0.9, floor=0.6))
    assert s[0] == 0.9 and abs(s[-1] - 0.6) < 1e-12 and s[0] > s[1] > s[2]
    assert schedule(DistillConfig(rounds=1, epsilon=0.9, floor=0.6)) == [0.9]


def test_class_confidence_is_the_rank_within_the_class_on_the_paper_scale() -> None:
    x = np.array([0.1, 0.9, 0.5])
    assert class_confidence(x, 1).tolist() == [0.5, 1.0, 0.75]
    assert class_confidence(x, 0).tolist() == [1.0, 0.5, 0.75]
    assert class_confidence(np.array([0.3]), 1).tolist() == [1.0] and len(class_confidence(np.zeros(0), 0)) == 0


def test_candidates_are_windows_a_strict_majority_of_the_voting_views_agrees_on() -> None:
    votes = np.array([0, 3, 1, 2, 3, 0])
    assert agreed(votes, 3).tolist() == [0, 1, 0, 1, 1, 0]
    assert agreed(np.array([0, 1, 2]), 2).tolist() == [0, -1, 1]  # two views: both, either way
    assert agreed(np.array([0, 1, 2, 2]), 4).tolist() == [0, 0, -1, -1]
    assert agreed(np.array([0, 1]), 1).tolist() == [0, 1]  # one view: its own decision (the paper's distillation)
    assert (agreed(np.array([0, 0]), 0) == -1).all()  # no voting view: no candidate
    # a window the fusion flags on a broken count relation is an anomalous candidate whatever the vote
    alone = np.array([True, False, True, False, False, False])
    assert candidates(votes, 3, alone).tolist() == [1, 1, 1, 1, 1, 0]
    assert candidates(votes, 3).tolist() == agreed(votes, 3).tolist()
    assert candidates(np.array([0, 0]), 0, np.array([True, False])).tolist() == [1, -1]


def test_per_class_cuts_keep_both_classes_however_the_model_is_calibrated() -> None:
    # a model that puts every window above 0.5 (as the transferred model does on BGL): a global cut max(p, 1-p)
    # >= eps would keep only "anomalous" windows; per-class ranks keep the top share of each class
    rng = np.random.default_rng(0)
    cand = np.array([0] * 80 + [1] * 20 + [-1] * 10)
    p = 0.6 + 0.4 * rng.random(len(cand))
    first = keep(cand, p, 0.9, set())
    labels = np.array(list(first.values()))
    assert (labels == 0).sum() == 16 and (labels == 1).sum() == 4  # the most confident 20 % of each class
    more = keep(cand, p, 0.6, set(first))
    assert not set(more) & set(first) and len(first) + len(more) == 80  # ε at the floor: 80 % of each class
    assert all(cand[i] >= 0 for i in {**first, **more})


def test_polarity_is_checked_against_the_fused_decision() -> None:
    fused = np.array([0, 0, 0, 1, 1])
    assert polarity_auc(np.array([0.1, 0.2, 0.3, 0.8, 0.9]), fused) == 1.0
    assert polarity_auc(np.array([0.9, 0.8, 0.7, 0.2, 0.1]), fused) == 0.0
    assert polarity_auc(np.array([0.5] * 5), np.zeros(5, int)) is None


def test_the_distilled_cut_is_a_threshold_near_k_windows() -> None:
    s = np.array([0.2, 0.9, 0.9, 0.1, 0.5])
    assert top_k(s, 2).tolist() == [False, True, True, False, False] and top_k(s, 0).sum() == 0
    # equal scores (identical windows) get one label: the tie at the cut is taken whole or left, nearer k wins
    s = np.array([0.9, 0.7, 0.7, 0.7, 0.1, 0.1])
    assert top_k(s, 3).tolist() == [True, True, True, True, False, False]  # 4 is 1 from k, 1 is 2 from k
    assert top_k(s, 2).tolist() == [True, False, False, False, False, False]  # 1 is 1 from k, 4 is 2 from k
    assert top_k(np.array([0.9, 0.5, 0.5, 0.1]), 2).sum() == 3  # a draw (1 or 3 for k = 2): the group whole
    assert top_k(s, 1).tolist() == [True, False, False, False, False, False]
    assert top_k(s, 10).all()
    for k in range(7):  # always a threshold: every flagged window scores above every unflagged one
        f = top_k(s, k)
        assert not f.any() or f.all() or s[f].min() > s[~f].max()

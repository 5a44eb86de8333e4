"""Dawid-Skene fusion of label-free views: quality estimated without labels, inverted and constant views."""

from __future__ import annotations

import numpy as np

from fusionlog.evaluate.metrics import best_f1, binary_metrics
from fusionlog.fusion import dawid_skene


def _votes(y: np.ndarray, sens: float, spec: float, rng: np.random.Generator) -> np.ndarray:
    u = rng.random(len(y))
    return np.where(y == 1, u < sens, u >= spec).astype(float)


def test_recovers_view_quality_and_the_prior_without_labels() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(5000) < 0.05).astype(int)
    votes = {"a": _votes(y, 0.9, 0.97, rng), "b": _votes(y, 0.8, 0.95, rng), "c": _votes(y, 0.7, 0.99, rng)}
    f = dawid_skene(votes)
    assert abs(f.prior - y.mean()) < 0.01
    assert abs(f.sensitivity["a"] - 0.9) < 0.05 and abs(f.specificity["b"] - 0.95) < 0.01
    fused = binary_metrics(y, f.posterior, 0.5)["f1"]
    assert fused > max(binary_metrics(y, v, 0.5)["f1"] for v in votes.values())


def test_an_inverted_view_counts_against_and_a_constant_one_not_at_all() -> None:
    rng = np.random.default_rng(1)
    y = (rng.random(3000) < 0.1).astype(int)
    good = {"a": _votes(y, 0.9, 0.95, rng), "b": _votes(y, 0.85, 0.96, rng), "c": _votes(y, 0.8, 0.97, rng)}
    base = dawid_skene(good)
    f = dawid_skene({**good, "inv": 1 - _votes(y, 0.8, 0.9, rng), "flat": np.ones(len(y))})
    pol = f.polarity()
    assert pol["inv"] == "inverted" and pol["flat"] == "no evidence" and pol["a"] == "agrees"
    assert binary_metrics(y, f.posterior, 0.5)["f1"] >= binary_metrics(y, base.posterior, 0.5)["f1"] - 0.01


def test_missing_votes_are_allowed() -> None:
    rng = np.random.default_rng(2)
    y = (rng.random(2000) < 0.1).astype(int)
    a = _votes(y, 0.9, 0.95, rng)
    a[::3] = np.nan
    f = dawid_skene({"a": a, "b": _votes(y, 0.9, 0.95, rng), "c": _votes(y, 0.9, 0.95, rng)})
    assert np.isfinite(f.posterior).all() and binary_metrics(y, f.posterior, 0.5)["f1"] > 0.8


def test_best_f1_is_the_oracle_over_all_cuts() -> None:
    y = np.array([1, 0, 1, 0, 0, 0])
    s = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    f1, cut = best_f1(y, s)
    assert cut == 0.7 and f1 == binary_metrics(y, s, 0.7)["f1"] == max(binary_metrics(y, s, c)["f1"] for c in s)
    assert binary_metrics(y, s, 0.5, pred=np.array([1, 0, 0, 0, 0, 0]))["recall"] == 0.5


def test_majority_of_the_voting_views_decides_and_inverted_or_flat_views_do_not_vote() -> None:
    from fusionlog.fusion import majority

    rng = np.random.default_rng(3)
    y = (rng.random(4000) < 0.05).astype(int)

    def view(sens: float, spec: float) -> np.ndarray:
        hit = rng.random(len(y)) < np.where(y == 1, sens, 1 - spec)
        return np.where(hit, rng.uniform(0.5, 1.0, len(y)), rng.uniform(0.0, 0.5, len(y)))

    views = {"a": view(0.85, 0.97), "b": view(0.8, 0.96), "c": view(0.75, 0.98)}
    inverted = 1.0 - view(0.8, 0.9)  # flags what the others leave alone
    flat = np.full(len(y), 0.9)  # says the same of every window: no evidence
    d = majority({**views, "inv": inverted, "flat": flat})
    assert d.voting == ["a", "b", "c"] and d.fused is not None and d.fused.polarity()["inv"] == "inverted"
    flags = sum((v >= 0.5).astype(int) for v in views.values())
    assert (d.label == (flags >= 2)).all() and (d.votes == flags).all()
    assert (d.score[d.label] >= 0.5).all() and (d.score[~d.label] < 0.5).all()
    fused = binary_metrics(y, d.score, 0.5, d.label)["f1"]
    assert fused > max(binary_metrics(y, v, 0.5)["f1"] for v in views.values())
    assert majority({"flat": flat}).voting == [] and not majority({"flat": flat}).label.any()


def test_two_views_that_disagree_both_vote_since_which_is_inverted_is_not_identified() -> None:
    from fusionlog.fusion import majority

    n = 1000
    a = np.where(np.arange(n) < 500, 0.9, 0.1)  # flags the first half
    b = np.where(np.arange(n) >= 400, 0.8, 0.2)  # flags the last 600: 100 in common, 300 if independent
    d = majority({"a": a, "b": b})
    assert d.fused is not None and "inverted" in d.fused.polarity().values()  # Dawid-Skene still names one
    assert d.voting == ["a", "b"] and (d.label == ((a >= 0.5) & (b >= 0.5))).all() and d.label.sum() == 100
    c = np.where(np.arange(n) < 450, 0.7, 0.3)  # a third view, siding with a: now b is the inverted one
    three = majority({"a": a, "b": b, "c": c})
    assert three.voting == ["a", "c"] and three.fused.polarity()["b"] == "inverted"


def test_evidence_taken_alone_flags_a_window_the_majority_leaves_and_ranks_it_at_the_cut() -> None:
    from fusionlog.fusion import majority

    a = np.array([0.9, 0.9, 0.1, 0.1, 0.2])
    b = np.array([0.8, 0.2, 0.1, 0.3, 0.1])
    alone = np.array([False, False, True, False, False])
    d = majority({"a": a, "b": b}, alone=alone)
    assert d.label.tolist() == [True, False, True, False, False] and d.votes.tolist() == [2, 1, 0, 0, 0]
    assert d.score[2] == 0.5 and d.score[0] > 0.5 and (d.score[[1, 3, 4]] < 0.5).all()
    assert majority({"a": a, "b": b}).label.tolist() == [True, False, False, False, False]
    none = majority({"flat": np.full(5, 0.9)}, alone=alone)  # no voting view: the evidence alone decides
    assert none.voting == [] and none.label.tolist() == alone.tolist()


def test_results_table_marks_a_target_its_labels_make_unmeasurable() -> None:
    from fusionlog.evaluate.results import markdown

    seed = {"seed": 0, "llm_calls": 3, "llm_event_calls": 2, "wall_seconds": 10.0,
            "views_rounds": [{"round": 1, "kept_total": [5, 1]},
                             {"round": 2, "kept_total": [8, 2], "kept_precision": 0.9}]}
    rows = [{"experiment": "a_to_b", "labeled": 10, "anomalous": 2, "seeds": [seed], "label_ceiling": 0.95,
             "measurable": True, "summary": {"fusionlog": {"mean": 0.9, "std": 0.0, "n": 1}}},
            {"experiment": "b_to_c", "labeled": 10, "anomalous": 2, "seeds": [seed], "label_ceiling": 0.18,
             "measurable": False, "summary": {"fusionlog": {"mean": 0.1, "std": 0.0, "n": 1}}},
            {"experiment": "c_to_d", "labeled": 0, "anomalous": 0, "seeds": [seed], "label_ceiling": None,
             "measurable": True, "summary": {}}]
    text = markdown(rows)
    assert "c_to_d (no labeled window: not evaluated) | 0 (0) | - |" in text
    assert "b_to_c (not measurable: its labels cap any detector at F1 0.18)" in text
    assert "a_to_b |" in text and "2 + 3" in text  # LLM calls: events + windows
    assert "8/2 (0.900)" in text  # the distillation's last kept pool and its precision
    assert "inside the slice" not in text  # no target of sessions cut from a slice: no second table
    rows[1]["inside_slice"] = {"rule": "RULE", "margin_s": 56.0, "windows": 303, "anomalous": 10,
                               "signature_ceiling": {"best_f1": 0.182},
                               "summary": {"fusionlog": {"mean": 0.25, "std": 0.0, "n": 1}}}
    text = markdown(rows)
    assert "inside the slice (RULE)" in text and "| b_to_c | 56 | 303 (10) | 0.182 | 0.250 |" in text

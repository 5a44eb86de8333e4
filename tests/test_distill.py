"""The keep rule of the distillation rounds: agreement, confidence, abstentions, and the class-balance guard."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fusionlog.distill.rounds import balance, keep
from fusionlog.llm.client import Verdict
from fusionlog.llm.knowledge import KnowledgeBase
from fusionlog.llm.label import Window


def _v(label: str) -> Verdict:
    return Verdict(label=label, confidence=0.9, reason="r")


def test_keep_needs_agreement_and_confidence() -> None:
    ws = [Window(f"w{i}", [i], ["t"]) for i in range(5)]
    verdicts = {"w0": _v("anomalous"), "w1": _v("anomalous"), "w2": _v("normal"), "w3": None, "w4": _v("normal")}
    p = np.array([0.95, 0.7, 0.05, 0.99, 0.8])  # w1: agrees, not confident; w3: abstained; w4: disagrees
    kept, labeled, agreed = keep(ws, verdicts, p, epsilon=0.9, threshold=0.5)
    assert kept == {"w0": 1, "w2": 0} and labeled == 4 and agreed == 3
    kept, _, _ = keep(ws, verdicts, p, epsilon=0.6, threshold=0.5)
    assert kept == {"w0": 1, "w1": 1, "w2": 0}


def test_balance_caps_the_majority_class_and_refuses_one_class_pools() -> None:
    ones = {f"a{i}": 1 for i in range(10)}
    assert balance(ones, {}, 4.0) == {}  # a one-class pool keeps nothing
    assert balance(ones, {}, None) == ones  # the guard is off
    out = balance(ones | {"n0": 0, "n1": 0}, {}, 2.0)
    assert sum(out.values()) == 4 and [w for w, v in out.items() if not v] == ["n0", "n1"]
    out = balance({"a0": 1, "a1": 1}, {"old": 0}, 1.0)  # the pool already holds one normal window
    assert out == {"a0": 1}


def test_balanced_retrieval_shows_both_labels(tmp_path: Path) -> None:
    """A knowledge base of mostly anomalous examples (like the HDFS sequence set) near the query: the plain
    search shows only anomalous examples, the balanced one the nearest two of each label (real LanceDB)."""
    rng = np.random.default_rng(0)
    q = np.ones(8, np.float32) / np.sqrt(8)
    rows = []
    for i in range(8):
        label = "normal" if i >= 6 else "anomalous"
        v = q + (0.05 if label == "anomalous" else 0.5) * rng.standard_normal(8).astype(np.float32)
        rows.append({"key": f"k{i}", "system": "S", "label": label, "window": f"w{i}", "origin": "labeled",
                     "vector": v / np.linalg.norm(v)})
    kb = KnowledgeBase(tmp_path)
    kb.add(rows)
    assert [e.label for e in kb.search(q, 4, "S")] == ["anomalous"] * 4
    got = kb.search(q, 4, "S", balanced=True)
    assert sorted(e.label for e in got) == ["anomalous", "anomalous", "normal", "normal"]
    assert [e.distance for e in got] == sorted(e.distance for e in got) and kb.search(q, 4, "T", True) == []

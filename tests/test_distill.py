"""The keep rule of the distillation rounds: agreement, confidence, abstentions, and the class-balance guard."""

from __future__ import annotations

import numpy as np

from fusionlog.distill.rounds import balance, keep
from fusionlog.llm.client import Verdict
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

"""Label-free baseline: a window is as anomalous as its rarest event is rare among the target's own windows.

``df(t)`` = the share of the target's windows that contain template ``t``; a window's score is
``1 / (1 + min_t df(t) / c)`` with ``c`` = 1 %: at least 0.5 exactly when its rarest event occurs in fewer than
1 % of the windows (the threshold every method shares), and higher the rarer it is (for PR-AUC). Reads no labels
and names no system's templates: it means the same on any system.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from fusionlog.methods import Artifacts, Method, register

RARE = 0.01  # c: an event in fewer than 1 % of the windows makes its window anomalous


def document_frequency(template_ids: list[list[int]]) -> dict[int, float]:
    """Per event, the share of the windows that hold it."""
    n, df = max(len(template_ids), 1), {}
    for ids in template_ids:
        for t in set(ids):
            df[t] = df.get(t, 0) + 1
    return {t: c / n for t, c in df.items()}


def rarity_scores(template_ids: list[list[int]], rare: float = RARE) -> np.ndarray:
    """Score per window from its template ids (see the module's docstring)."""
    df = document_frequency(template_ids)
    low = np.array([min((df[t] for t in set(ids)), default=1.0) for ids in template_ids], np.float64)
    return (1.0 / (1.0 + low / rare)).astype(np.float32)


@register("rarity")
class Rarity(Method):
    """How rare the window's rarest event is among the target's windows."""

    baseline = True
    cut = "the rarest event is in < 1 % of the target's windows"

    def hash_inputs(self, exp: object) -> object:
        return {"rare": RARE}

    def score(self, art: Artifacts) -> pa.Table:
        return art.table(rarity_scores(art.template_ids()), "rarity")

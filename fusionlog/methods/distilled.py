"""``fusionlog-distilled``: the small model after distillation on the agreeing views (:mod:`fusionlog.distill.views`)
scores every window: what the views agree on, learned by a model that also scores the windows they dispute, and
serves new windows without an LLM call.

Its cut is label-free: it flags as many windows as the fusion (``fusionlog``) does, the contamination the agreeing
views estimate; a model fine-tuned on class-balanced pseudo-labels is not calibrated to the target's prior, so
P >= 0.5 would not mean what it says.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from fusionlog.methods import Artifacts, Method, Needs, get, register


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` highest scores flagged (ties at the cut broken by position: exactly ``k`` flags)."""
    out = np.zeros(len(scores), bool)
    if k > 0:
        out[np.argsort(-np.asarray(scores), kind="stable")[:k]] = True
    return out


@register("fusionlog-distilled")
class FusionLogDistilled(Method):
    """The small model distilled on the windows the label-free views agree on."""

    needs = Needs(models=("general",), judge=True, views=True)
    cut = "as many windows as the fusion flags (the contamination the agreeing views estimate), highest first"

    def hash_inputs(self, exp: object) -> object:
        return {"cut": "fusion-count-v1"}

    def score(self, art: Artifacts) -> pa.Table:
        by_id = art.small(art.models["views"])
        s = np.array([by_id[i] for i in art.ids], np.float64)
        _, d = get("fusionlog").decide(art)  # type: ignore[attr-defined]
        k = int(d.label.sum())
        art.notes[self.name] = {"cut": self.cut, "flagged": k, "windows": len(s), "model": art.models["views"]}
        return art.table(s, "distilled", labels=top_k(s, k))

"""``fusionlog-distilled``: the small model after distillation on the agreeing views (:mod:`fusionlog.distill.views`)
scores every window: what the views agree on, learned by a model that also scores the windows they dispute, and
serves new windows without an LLM call.

Its cut is label-free: it flags about as many windows as the fusion (``fusionlog``) does, the contamination the
agreeing views estimate, as a threshold on its score (:func:`top_k`); a model fine-tuned on class-balanced
pseudo-labels is not calibrated to the target's prior, so P >= 0.5 would not mean what it says.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from fusionlog.methods import Artifacts, Method, Needs, get, register


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """About the ``k`` highest scores flagged, as a threshold on the score: windows that score alike get the same
    label (identical windows do), so a group of equal scores at the cut is flagged whole or not at all, whichever
    leaves the count nearer ``k`` (whole on a draw)."""
    s = np.asarray(scores, np.float64)
    if k <= 0 or len(s) == 0:
        return np.zeros(len(s), bool)
    t = np.sort(s)[::-1][min(k, len(s)) - 1]  # the k-th highest score
    whole, without = s >= t, s > t
    return whole if whole.sum() - k <= k - without.sum() else without


@register("fusionlog-distilled")
class FusionLogDistilled(Method):
    """The small model distilled on the windows the label-free views agree on."""

    needs = Needs(models=("general",), judge=True, views=True)
    cut = ("about as many windows as the fusion flags (the contamination the agreeing views estimate), highest first; "
           "a group of equal scores at the cut whole or not at all")

    def hash_inputs(self, exp: object) -> object:
        return {"cut": "fusion-count-v2"}

    def score(self, art: Artifacts) -> pa.Table:
        by_id = art.small(art.models["views"])
        s = np.array([by_id[i] for i in art.ids], np.float64)
        _, d = get("fusionlog-vote").decide(art)  # type: ignore[attr-defined]
        k = int(d.label.sum())
        flags = top_k(s, k)
        art.notes[self.name] = {"cut": self.cut, "fusion_flagged": k, "flagged": int(flags.sum()), "windows": len(s),
                                "model": art.models["views"]}
        return art.table(s, "distilled", labels=flags)

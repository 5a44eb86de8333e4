"""The trivial baseline: every window anomalous (the floor any detector must beat: F1 = 2p / (1 + p))."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from fusionlog.contracts import SCORES
from fusionlog.methods import Artifacts, Method, register


@register("all-anomalous")
class AllAnomalous(Method):
    """Flag every window."""

    baseline = True

    def score(self, art: Artifacts) -> pa.Table:
        n = len(art.ids)
        return pa.table({"window_id": art.ids, "score": np.ones(n, np.float32), "label": np.ones(n, np.int8),
                         "route": [art.routes[i] for i in art.ids], "scorer": ["constant"] * n,
                         "round": pa.nulls(n, pa.int16())}, schema=SCORES)

"""The trivial baseline: every window anomalous (the floor any detector must beat: F1 = 2p / (1 + p))."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from fusionlog.methods import Artifacts, Method, register


@register("all-anomalous")
class AllAnomalous(Method):
    """Flag every window."""

    baseline = True
    cut = "every window"

    def score(self, art: Artifacts) -> pa.Table:
        return art.table(np.ones(len(art.ids)), "constant", labels=np.ones(len(art.ids)))

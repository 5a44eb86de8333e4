"""Label-free baseline: count-vector PCA with the Q-statistic (loglizer's PCA; Xu et al., SOSP 2009).

Each window is a vector of event counts, weighted by idf and centred; PCA (scikit-learn) keeps the components
that explain 95 % of the variance (the normal space); a window's squared prediction error (SPE) is its squared
distance from that space, and the Q-statistic (Jackson & Mudholkar) at α = 0.001 is the cut. The score is
``SPE / (SPE + Q)``: at least 0.5 exactly when SPE >= Q (the shared threshold), higher the farther out.
Meant for session windows (many events per window); it reads no labels and names no system's events.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from fusionlog.methods import Artifacts, Method, register

VARIANCE = 0.95  # of the centred, idf-weighted count vectors kept as the normal space
C_ALPHA = 3.2905  # the normal deviate of 1 - α, α = 0.001 (loglizer)


def count_matrix(template_ids: list[list[int]]) -> np.ndarray:
    """Windows x events counts, idf-weighted and centred."""
    events = sorted({t for ids in template_ids for t in ids})
    col = {t: j for j, t in enumerate(events)}
    x = np.zeros((len(template_ids), max(len(events), 1)))
    for i, ids in enumerate(template_ids):
        for t in ids:
            x[i, col[t]] += 1
    df = (x > 0).sum(axis=0)
    x = x * np.log(len(template_ids) / np.maximum(df, 1))
    return x - x.mean(axis=0)


def q_statistic(residual_eigenvalues: np.ndarray, c_alpha: float = C_ALPHA) -> float:
    """The Q-statistic threshold of the squared prediction error from the residual space's eigenvalues."""
    phi = [float(np.sum(residual_eigenvalues ** i)) for i in (1, 2, 3)]
    if phi[0] <= 0 or phi[1] <= 0:
        return 0.0
    h0 = 1.0 - 2.0 * phi[0] * phi[2] / (3.0 * phi[1] ** 2)
    if h0 <= 0:
        return phi[0]
    return phi[0] * (c_alpha * np.sqrt(2 * phi[1] * h0 ** 2) / phi[0] + 1.0 + phi[1] * h0 * (h0 - 1.0) /
                     phi[0] ** 2) ** (1.0 / h0)


def pca_scores(template_ids: list[list[int]], variance: float = VARIANCE) -> tuple[np.ndarray, float]:
    """(score per window, the Q-statistic) for the windows' event counts."""
    from sklearn.decomposition import PCA

    x = count_matrix(template_ids)
    if len(x) < 3 or not np.any(x):
        return np.zeros(len(x), np.float32), 0.0
    pca = PCA(svd_solver="full").fit(x)
    lam = pca.explained_variance_
    k = int(np.searchsorted(np.cumsum(pca.explained_variance_ratio_), variance) + 1)
    k = min(k, len(lam) - 1) if len(lam) > 1 else len(lam)
    p = pca.components_[:k]
    residual = x - (x @ p.T) @ p
    spe = np.sum(residual ** 2, axis=1)
    q = q_statistic(lam[k:])
    score = spe / (spe + q) if q > 0 else (spe > 0).astype(float)
    return score.astype(np.float32), float(q)


@register("pca")
class PCAMethod(Method):
    """Squared prediction error of the window's event counts against the principal (normal) space."""

    baseline = True
    cut = "squared prediction error >= the Q-statistic (alpha 0.001)"

    def hash_inputs(self, exp: object) -> object:
        return {"variance": VARIANCE, "c_alpha": C_ALPHA}

    def score(self, art: Artifacts) -> pa.Table:
        return art.table(pca_scores(art.template_ids())[0], "pca")

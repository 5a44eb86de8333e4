"""Fusing label-free views of the target's windows without labels: Dawid–Skene (1979) on their votes.

Each view (the LLM's event judgment, severity, rarity, PCA, the small model, ...) votes on every window with its
own label-free cut (score >= 0.5; a missing vote is allowed). Nobody knows how good each view is on a system
nobody has labeled; Dawid–Skene estimates it from the target itself: EM over a two-class latent label, with each
view's sensitivity and specificity and the anomaly prior as parameters (views assumed independent given the
label). The result is each window's posterior P(anomalous | votes), each view's estimated quality and the
estimated contamination. :func:`majority` uses it to leave out a view that goes against the others, and
decides by the views' majority.

A view whose votes go against the others gets sensitivity < 1 - specificity: its vote then counts *against*
anomaly (its polarity is reported as inverted), and a view that votes the same on every window carries no
evidence (likelihood ratio 1). Beta(1, 1) pseudo-counts keep every rate inside (0, 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ITERATIONS = 200
IDENTIFIED = 3  # views needed before one can be called inverted (two views' joint votes cannot tell which)
TOL = 1e-7
PSEUDO = 1.0  # Beta pseudo-counts on every rate


@dataclass
class Fused:
    posterior: np.ndarray  # P(anomalous | votes) per window
    prior: float  # the estimated anomaly share (contamination)
    sensitivity: dict[str, float]  # view -> P(vote anomalous | anomalous)
    specificity: dict[str, float]  # view -> P(vote normal | normal)
    iterations: int

    def polarity(self) -> dict[str, str]:
        """Per view: ``agrees`` (its votes mean what they say), ``inverted`` or ``no evidence``."""
        out = {}
        for v, se in self.sensitivity.items():
            j = se + self.specificity[v] - 1.0  # Youden's J, estimated without labels
            out[v] = "agrees" if j > 0.02 else "inverted" if j < -0.02 else "no evidence"
        return out

    def estimated_f1(self) -> dict[str, float]:
        """Each view's F1, estimated without labels from its sensitivity, specificity and the prior."""
        out = {}
        for v, se in self.sensitivity.items():
            tp, fp = self.prior * se, (1 - self.prior) * (1 - self.specificity[v])
            precision = tp / (tp + fp) if tp + fp else 0.0
            out[v] = 2 * precision * se / (precision + se) if precision + se else 0.0
        return out

    def summary(self) -> dict:
        f1 = self.estimated_f1()
        return {"prior": self.prior, "iterations": self.iterations, "views": {
            v: {"sensitivity": self.sensitivity[v], "specificity": self.specificity[v], "polarity": p,
                "estimated_f1": f1[v]} for v, p in self.polarity().items()}}


def dawid_skene(votes: dict[str, np.ndarray], iterations: int = ITERATIONS, tol: float = TOL) -> Fused:
    """Fuse binary ``votes`` (view -> array of 1/0, NaN = no vote) of the same windows (module docstring).

    Starts from the mean vote of each window (the soft majority), so that "anomalous" keeps the meaning the views
    give it."""
    names = list(votes)
    if not names:
        raise ValueError("dawid_skene needs at least one view")
    v = np.vstack([np.asarray(votes[k], np.float64) for k in names]).T  # windows x views
    seen = ~np.isnan(v)
    v0 = np.where(seen, v, 0.0)
    mu = np.where(seen.any(axis=1), np.nansum(v, axis=1) / np.maximum(seen.sum(axis=1), 1), 0.5)
    it = 0
    for it in range(1, iterations + 1):  # noqa: B007 (the count is reported)
        a, n = mu[:, None], 1.0 - mu[:, None]
        sens = ((a * v0 * seen).sum(0) + PSEUDO) / ((a * seen).sum(0) + 2 * PSEUDO)
        spec = ((n * (1 - v0) * seen).sum(0) + PSEUDO) / ((n * seen).sum(0) + 2 * PSEUDO)
        prior = (mu.sum() + PSEUDO) / (len(mu) + 2 * PSEUDO)
        on = np.log(sens) - np.log(1 - spec)  # log LR of an anomalous vote
        off = np.log(1 - sens) - np.log(spec)  # log LR of a normal vote
        logit = np.log(prior / (1 - prior)) + (seen * (v0 * on + (1 - v0) * off)).sum(axis=1)
        new = 1.0 / (1.0 + np.exp(-np.clip(logit, -50, 50)))
        delta = float(np.max(np.abs(new - mu))) if len(mu) else 0.0
        mu = new
        if delta < tol:
            break
    return Fused(mu, float(prior), dict(zip(names, map(float, sens), strict=True)),
                 dict(zip(names, map(float, spec), strict=True)), it)


def ranks(x: np.ndarray) -> np.ndarray:
    """Scores as their normalised ranks in [0, 1] (ties share the mean rank)."""
    from scipy.stats import rankdata

    return (rankdata(x) - 1) / max(len(x) - 1, 1)


@dataclass
class Decision:
    score: np.ndarray  # the fused ranking: the flagged windows in [0.5, 1], the others in [0, 0.5)
    label: np.ndarray  # a strict majority of the voting views flags the window
    voting: list[str]  # the views that vote: they vote both ways and do not go against the others
    fused: Fused | None  # the views' quality, estimated without labels (polarity, prior)
    votes: np.ndarray  # per window, how many voting views flag it
    flags: dict[str, int]  # per voting view, the windows it flags on its own
    alone: np.ndarray | None = None  # windows flagged on evidence taken alone (whatever the vote), or None


def majority(scores: dict[str, np.ndarray], threshold: float = 0.5, alone: np.ndarray | None = None) -> Decision:
    """Fuse views without labels: a window is anomalous when a strict majority of the voting views flag it, each
    at its own label-free cut (score >= ``threshold``), or where ``alone`` (evidence no voting view can check, taken
    on its own: :mod:`fusionlog.methods.fused`) is True; those windows rank just at the cut. A view votes when it
    flags some windows but not all (one that says the same of every window carries no evidence), and Dawid-Skene
    does not find it inverted (its votes going against the others: it is left out, and the fusion's notes say so).
    That test needs at least :data:`IDENTIFIED` such views: two views' joint votes have three free cells and
    Dawid-Skene five parameters (the prior, two sensitivities, two specificities), so where two disagree it cannot
    tell which is the inverted one (its answer is the start's and the pseudo-counts'); both vote, and a window needs
    both.

    Ranking (for PR-AUC and the report): the number of flags, then the mean rank of the voting views' scores.
    Why a vote and not Dawid-Skene's posterior: views computed from the same events are not independent (rarity and
    PCA both read the counts; the LLM's and the severity view both read the event), which inflates the posterior of
    windows that correlated views flag and makes the estimated best view unstable; a majority needs no estimate
    (docs/pipeline.md: both measured)."""
    n = len(next(iter(scores.values()))) if scores else (0 if alone is None else len(alone))
    votes = {v: (np.asarray(s) >= threshold).astype(np.float64) for v, s in scores.items()}
    informative = [v for v in votes if 0 < votes[v].sum() < n]
    fused = dawid_skene({v: votes[v] for v in informative}) if informative else None
    identified = len(informative) >= IDENTIFIED
    voting = [v for v in informative if fused is not None and (not identified or fused.polarity()[v] != "inverted")]
    extra = np.zeros(n, bool) if alone is None else np.asarray(alone, bool)
    if not voting:
        return Decision(np.where(extra, 0.5, 0.0), extra.copy(), [], fused, np.zeros(n), {}, alone)
    count = np.sum([votes[v] for v in voting], axis=0)
    need = len(voting) // 2 + 1
    raw = count + 0.999 * np.mean([ranks(scores[v]) for v in voting], axis=0)  # in [0, len(voting) + 1)
    score = np.where(raw >= need, 0.5 + 0.5 * (raw - need) / (len(voting) + 1 - need), 0.5 * raw / need)
    score = np.where(extra & (count < need), 0.5, score)
    return Decision(score, (count >= need) | extra, voting, fused, count, {v: int(votes[v].sum()) for v in voting},
                    alone)

"""Distillation on the agreeing views (issue 15, part 5): the small model learns the target from the windows on
which the label-free views agree, round after round, without a window-level LLM call and without target labels.

Round r = 1..R, with ε_r going linearly from ``epsilon`` to ``floor`` (the floor is reached in the last round):

1. **Candidates**: the windows the fusion flags on a broken count relation (anomalous, as it decides), and
   windows on which a strict majority of the fusion's voting views
   (:meth:`fusionlog.methods.fused.FusionLog.decide`: the LLM's event judgment and severity where levels exist;
   rarity and PCA where windows are sessions) agree, anomalous or normal; with two voting views, both; with one (a
   system that logs no levels, in one-line windows), that view's own decision, as the paper distils the LLM's
   labels (before 2026-12-05 none, and the small model stayed the transferred one on such systems). Unanimity
   was tried first: on HDFS the LLM's view flags 81 % of the blocks, so "no view flags it" left a narrow, atypical
   set of normal blocks (19 %), and the model learned to flag 81 % of the blocks again.
2. **Per-class confidence cuts**: the small model (the one being distilled) ranks each class's candidates by its
   confidence in that class; a candidate's confidence is its rank mapped onto [0.5, 1] (0.5 + rank / 2, the
   scale of the paper's max(p, 1 - p)), so ε_r keeps the same share of each class however the model's
   probabilities are calibrated on the target: ε = 0.9 keeps a class's most confident 20 %, ε = 0.6 its most
   confident 80 %. Where the model's ranking goes against the views (ROC-AUC of its scores against the fused
   decision below 0.5: its polarity is checked without labels) the views' own fused ranking is used instead.
3. **Class balance** is in the training batches (half of each class); the pool keeps every confident candidate
   of both classes, since capping the normal class at ``max_class_ratio`` x the anomalous one cut HDFS's normal
   pool to a few repeated sessions. The class guard stays: a pool with no window of one class keeps nothing
   (fine-tuning on one class collapses the model).
4. **Fine-tune** the model (Ray Train, from the previous round's weights) on the kept pool alone, supervised with
   class-balanced batches: what the sources taught is in the weights it starts from. (With the sources' windows
   in the same run, the kept pool was one meta-learning task among the sources' time slices, and on HDFS the
   model's ranking fell from ROC-AUC 0.44 to 0.27 over three rounds: the pseudo-labels were drowned.)

The kept pool never shrinks (ε falls and kept windows stay) and grows while ε passes more candidates; identical
windows share one confidence, so a round whose cut falls inside such a tie keeps nothing new and leaves the model
as it is (with the test double's coarse event scores, round 1 at ε 0.7 kept 1,426 of 1,440 candidates).
Per round: ε, candidates and kept windows per class, the confidence source; the kept pool's precision per class
is computed by evaluation (it reads the labels; this module never does).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fusionlog.config import DistillConfig, ExperimentConfig
from fusionlog.console import Reporter
from fusionlog.train.data import Pseudo
from fusionlog.train.stage import train

POLARITY_MARGIN = 0.02  # the small model ranks with the views when its AUC against the fused decision > 0.5 + this


@dataclass
class ViewsResult:
    model_dir: str  # the distilled small model (the base model when no round kept a window)
    rounds: list[dict]  # one row per round
    kept: dict[str, tuple[int, int]] = field(default_factory=dict)  # window id -> (pseudo-label, round kept)
    seconds: float = 0.0


def schedule(cfg: DistillConfig) -> list[float]:
    """ε_1..ε_R: linear from ``cfg.epsilon`` to ``cfg.floor`` (one round: ``cfg.epsilon``)."""
    r = cfg.rounds
    return [cfg.epsilon - (cfg.epsilon - cfg.floor) * (i / (r - 1) if r > 1 else 0.0) for i in range(r)]


def class_confidence(x: np.ndarray, cls: int) -> np.ndarray:
    """Each candidate's confidence in class ``cls`` from a ranking ``x`` (higher: more anomalous): its rank among
    the class's candidates mapped onto [0.5, 1] (ties share their mean rank)."""
    from scipy.stats import rankdata

    if len(x) == 0:
        return np.zeros(0)
    if len(x) == 1:
        return np.ones(1)
    r = rankdata(x if cls == 1 else -np.asarray(x))
    return 0.5 + 0.5 * (r - 1) / (len(x) - 1)


def agreed(votes: np.ndarray, voting: int) -> np.ndarray:
    """Per window: 1 where a strict majority of the ``voting`` views flags it, 0 where a strict majority does not,
    -1 otherwise (a tie: no candidate). Two views: both must agree, either way. One view (a system that logs no
    levels, in one-line windows: the LLM's event judgment alone) has no second opinion: its own decision is the
    candidate, as in the paper's distillation of the LLM's labels, and the per-class confidence cuts keep its most
    confident windows of each class. No view: no candidate."""
    out = np.full(len(votes), -1, np.int8)
    if voting >= 1:
        out[2 * votes > voting] = 1
        out[2 * (voting - votes) > voting] = 0
    return out


def candidates(votes: np.ndarray, voting: int, alone: np.ndarray | None = None) -> np.ndarray:
    """:func:`agreed`, and anomalous wherever ``alone`` (the fusion flags the window on a broken count relation)."""
    out = agreed(votes, voting)
    if alone is not None:
        out[np.asarray(alone, bool)] = 1
    return out


def polarity_auc(p: np.ndarray, fused: np.ndarray) -> float | None:
    """ROC-AUC of the small model's scores against the fused decision (no labels); None with one class."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(fused, p)) if 0 < fused.sum() < len(fused) else None


def keep(cand: np.ndarray, ranking: np.ndarray, eps: float, already: set[int]) -> dict[int, int]:
    """Candidates (index -> label) at or above ε in their class's confidence, not kept before."""
    out: dict[int, int] = {}
    for c in (0, 1):
        idx = np.flatnonzero(cand == c)
        conf = class_confidence(ranking[idx], c)
        out |= {int(i): c for i, k in zip(idx, conf, strict=True) if k >= eps and int(i) not in already}
    return out


def distill_views(run: Path, exp: ExperimentConfig, ids: list[str], template_ids: list[list[int]],
                  votes: np.ndarray, voting: int, fused_label: np.ndarray, fused_score: np.ndarray,
                  small: Callable[[str], dict[str, float]], base_model: Path, seed: int = 0,
                  progress: Callable[[str], None] | None = None, reporter: Reporter | None = None,
                  alone: np.ndarray | None = None) -> ViewsResult:
    """The rounds (module docstring) over the target's windows ``ids``; ``votes`` = how many of the ``voting``
    views flag each window, ``fused_label``/``fused_score`` the fusion's decision and ranking, ``small(model_dir)``
    the small model's P(anomalous) by window id, ``alone`` the windows the fusion flags on evidence taken alone (a
    broken count relation): anomalous candidates whatever the vote."""
    say = progress or (lambda _m: None)
    reporter = reporter or Reporter()
    cfg, t0 = exp.distill, time.perf_counter()
    cand = candidates(votes, voting, alone)
    model_dir = Path(base_model)
    res = ViewsResult(str(model_dir), [])
    kept: dict[int, int] = {}
    fused = np.asarray(fused_label, np.int8)
    for r, eps in enumerate(schedule(cfg), start=1):
        tr = time.perf_counter()
        by_id = small(str(model_dir))
        p = np.array([by_id[i] for i in ids], np.float64)
        auc = polarity_auc(p, fused)
        source = "small model" if auc is not None and auc > 0.5 + POLARITY_MARGIN else "views"
        ranking = p if source == "small model" else np.asarray(fused_score, np.float64)
        confident = keep(cand, ranking, eps, set(kept))
        have = set(kept.values()) | set(confident.values())
        new = confident if have == {0, 1} else {}  # the class guard: a pool of one class keeps nothing
        kept |= new
        res.kept |= {ids[i]: (c, r) for i, c in new.items()}
        row = {"round": r, "epsilon": eps, "confidence": source, "auc_vs_fusion": auc,
               "candidates": [int((cand == 0).sum()), int((cand == 1).sum())],
               "confident": [sum(1 for c in confident.values() if c == k) for k in (0, 1)],
               "kept": [sum(1 for c in new.values() if c == k) for k in (0, 1)],
               "kept_total": [sum(1 for c in kept.values() if c == k) for k in (0, 1)], "seconds": 0.0}
        if new:
            order = sorted(kept)
            tcfg = exp.train.model_copy(update={"objective": "source_only", "steps": cfg.finetune_steps,
                                                "select": "last", "seed": seed})
            say(f"views distill round {r}: ε {eps:.2f}, fine-tune on {len(order)} kept windows "
                f"({row['kept_total'][1]} anomalous)")
            with reporter.bar(f"views distill round {r}: fine-tune (steps)") as tick:
                out = train(run, [], exp.target, tcfg, exp.model, name=f"views-s{seed}-r{r}",
                            pseudo=Pseudo(exp.target, [template_ids[i] for i in order], [kept[i] for i in order]),
                            init_from=model_dir, progress=tick)
            model_dir = Path(out.model_dir)
        else:
            say(f"views distill round {r}: ε {eps:.2f}, nothing new to keep "
                f"(candidates {row['candidates']} normal/anomalous)")
        row["model_dir"] = str(model_dir)
        row["seconds"] = time.perf_counter() - tr
        res.rounds.append(row)
    res.model_dir, res.seconds = str(model_dir), time.perf_counter() - t0
    return res

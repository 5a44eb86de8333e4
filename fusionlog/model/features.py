"""System-agnostic event features for the small model, beside each template's semantic vector.

Each feature means the same on every system and is computed on each system from its own lines and windows,
with no labels (``events/``, ``event_scores/``):

* ``severity``: the event's level on one scale (fatal 1.0 ... info 0.1, as the ``severity`` method scores it)
  and whether the system logs levels at all (event-sequence sets do not: both 0);
* ``rarity``: how few of the system's own windows hold the event, ``log(1/df) / log(windows)`` in [0, 1]
  (1: one window only; 0: every window);
* ``llm``: the LLM's calibrated event score (``fusionlog.llm.judge``; 0.5 where it abstained).

A model trained with features is scored with the same ones (``model.event_features`` is in ``model.json``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

FEATURES = {"severity": 2, "rarity": 1, "llm": 1}  # name -> columns


def width(names: list[str] | tuple[str, ...]) -> int:
    return sum(FEATURES[n] for n in names)


def learnable(names: list[str], labeled_levels: dict[str, bool], target_levels: dict[str, bool],
              ) -> tuple[list[str], list[str]]:
    """The features a model can learn and use, and a note per feature left out: ``severity`` needs a system it
    learns labels from that logs levels (else the feature is constant in training) and a target that logs them
    (else the target shows it a value it never learned). ``*_levels``: system -> whether it logs levels."""
    if "severity" not in names:
        return list(names), []
    if not any(labeled_levels.values()):
        why = f"no system the model learns labels from ({', '.join(labeled_levels) or 'none'}) logs levels"
    elif not all(target_levels.values()):
        why = f"the target ({', '.join(s for s, v in target_levels.items() if not v)}) logs no levels"
    else:
        return list(names), []
    return [n for n in names if n != "severity"], [f"event feature 'severity' not used: {why}"]


def logs_levels(run: Path, system: str) -> bool:
    """Whether any of the system's events has a level (event-sequence sets have none)."""
    from fusionlog.events import read_events

    return bool(set(read_events(run, system)["level"].to_pylist()) - {"unknown"})


def event_features(run: Path, system: str, names: list[str] | tuple[str, ...]) -> dict[int, np.ndarray]:
    """template id -> float32 feature row (the columns of ``names``, in :data:`FEATURES` order)."""
    from fusionlog.events import read_events
    from fusionlog.methods.severity import SCORE

    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise ValueError(f"model.event_features: unknown {unknown}; known: {', '.join(FEATURES)}")
    ev = read_events(run, system)
    ids = ev["template_id"].to_pylist()
    cols: list[np.ndarray] = []
    if "severity" in names:
        level = ev["level"].to_pylist()
        logged = any(x != "unknown" for x in level)
        cols.append(np.array([SCORE.get(x, 0.0) for x in level], np.float32))
        cols.append(np.full(len(ids), 1.0 if logged else 0.0, np.float32))
    if "rarity" in names:
        df, held = ev["df"].to_numpy(), ev["windows"].to_numpy()
        n = max((h / d for h, d in zip(held, df, strict=True) if d > 0), default=1.0)
        denom = math.log(n) if n > 1 else 1.0
        cols.append(np.array([min(1.0, math.log(1 / d) / denom) if d > 0 else 1.0 for d in df], np.float32))
    if "llm" in names:
        from fusionlog.llm.judge import read_event_scores

        try:
            score = read_event_scores(run, system)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"model.event_features has 'llm' but {system}'s events were not judged ({exc}); "
                                    "`fusionlog run <experiment> --until judge` judges them, or drop 'llm'") from None
        cols.append(np.array([0.5 if score.get(t) is None else float(score[t]) for t in ids], np.float32))
    mat = np.stack(cols, 1) if cols else np.zeros((len(ids), 0), np.float32)
    return {int(t): mat[k] for k, t in enumerate(ids)}

"""The modes' scores of the target's windows, from the stages' outputs (no model is trained here):

- ``fusionlog``: the distilled small model scores every window (both branches);
- ``generallog``: general windows by the general-branch model, proprietary ones by the LLM + RAG (its round-1
  verdicts, knowledge base = the labeled sources); an abstained window falls back to the small model;
- ``no-router``: the small model aligned to every target window scores every window;
- ``llm-only``: the LLM + RAG labels every window (abstained: score 0.5, label normal, scorer ``abstained``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fusionlog.contracts import SCORES
from fusionlog.io import atomic_dir
from fusionlog.rundir import method_scores_dir


def verdict_score(label: str | None, confidence: float | None) -> float | None:
    """P(anomalous) from an LLM verdict (None when it abstained)."""
    if label is None or confidence is None:
        return None
    return float(confidence) if label == "anomalous" else 1.0 - float(confidence)


def combine(ids: list[str], routes: dict[str, str], small: dict[str, float] | None, llm: dict[str, float | None],
            use_llm_for: str, threshold: float, round_no: int | None) -> pa.Table:
    """One row per window: the LLM's score where ``use_llm_for`` says (``proprietary`` | ``all`` | ``none``) and it
    answered, else the small model's."""
    score, scorer = [], []
    for i in ids:
        s = llm.get(i) if use_llm_for == "all" or (use_llm_for == "proprietary" and routes[i] == "proprietary") \
            else None
        if s is not None:
            score.append(s)
            scorer.append("llm")
        elif small is not None:
            score.append(small[i])
            scorer.append("small_model")
        else:
            score.append(0.5)
            scorer.append("abstained")
    sc = np.array(score, np.float64)
    return pa.table({"window_id": ids, "score": sc, "label": (sc >= threshold).astype(np.int8),
                     "route": [routes[i] for i in ids], "scorer": scorer,
                     "round": pa.array([round_no] * len(ids), pa.int16()),
                     "flagged_by": pa.nulls(len(ids), SCORES.field("flagged_by").type),
                     "evidence": pa.nulls(len(ids), SCORES.field("evidence").type)}, schema=SCORES)


def write_scores(run: Path, mode: str, target: str, table: pa.Table) -> Path:
    """Write ``mode``'s scores of ``target``'s windows (:func:`fusionlog.rundir.method_scores_dir`); its path."""
    out = method_scores_dir(run, mode, target)
    with atomic_dir(out) as tmp:
        tmp.mkdir()
        pq.write_table(table, tmp / "part-0.parquet")
    return out


def read_scores(run: Path, mode: str, target: str) -> pa.Table:
    """``mode``'s scores of ``target``'s windows."""
    return pq.read_table(method_scores_dir(run, mode, target))

"""Label-free baseline: a window is as anomalous as the most severe level its lines are logged at.

Each line's level is read as the system logged it (``windows/``'s ``levels``, one per line), normalised to fatal,
error, warn, info, debug, unknown by the system's ``levels:`` map and :data:`fusionlog.events.DEFAULT_LEVELS`. A
window scores its most severe line: fatal 1.0, error 0.75, warn 0.4, info 0.1, debug 0.05, unknown 0.0; at the
shared threshold (0.5) that is the operator's rule "error or worse". Systems without levels score 0 everywhere (the
table says so: the baseline exists only where levels exist). The line's own level, not its event's usual one: a
template that a system logs at FATAL on some lines and INFO on others (BGL's register-dump lines) is as severe as
each line says.

``severity-top`` ranks the same way and cuts at the most severe level the system's lines use ("Level is FATAL"
on a system that logs FATAL, "ERROR" on one whose worst is ERROR, nothing where it is below WARN): the stricter
operator's rule, a second label-free baseline. The fusion's severity view keeps "error or worse"; which of the
two cuts suits a target cannot be told without its labels (docs/pipeline.md has both measured).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fusionlog.methods import Artifacts, Method, register

SCORE = {"fatal": 1.0, "error": 0.75, "warn": 0.4, "info": 0.1, "debug": 0.05, "unknown": 0.0}


def severity_scores(levels: pa.ListArray | pa.ChunkedArray | list, normalize: dict[str, str] | None = None
                    ) -> np.ndarray:
    """The highest level score of each window's lines; ``levels`` holds each window's raw line levels (a null list
    or a null level: unknown), ``normalize`` the system's ``levels:`` map."""
    from fusionlog.events import normalize_level

    if isinstance(levels, pa.ChunkedArray):
        levels = levels.combine_chunks()
    arr = levels if isinstance(levels, pa.Array) else pa.array(levels, pa.list_(pa.string()))
    out = np.zeros(len(arr), np.float64)
    flat, parent = pc.list_flatten(arr), pc.list_parent_indices(arr).to_numpy()
    if len(flat):
        raw = pc.fill_null(flat, "").dictionary_encode()
        by_raw = np.array([SCORE[normalize_level(v or None, normalize)] for v in raw.dictionary.to_pylist()],
                          np.float64)
        np.maximum.at(out, parent, by_raw[raw.indices.to_numpy()])
    return out


def window_levels(art: Artifacts) -> pa.ChunkedArray:
    """Each window's raw line levels, in :attr:`Artifacts.ids` order."""
    import pyarrow.parquet as pq

    from fusionlog.rundir import table_dir
    from fusionlog.train.data import read_windows

    wdir = table_dir(art.run, "windows", art.target)
    part = next(wdir.glob("*.parquet"), None) if wdir.is_dir() else None
    if part is not None and "levels" not in pq.read_schema(part).names:
        raise ValueError(f"{wdir} was written before windows kept each line's level: run the ingest stage again "
                         f"(`fusionlog run ... --from ingest`)")
    t = read_windows(art.run, art.target, ["window_id", "levels"])
    pos = pc.index_in(pa.array(art.ids, pa.string()), value_set=t["window_id"].combine_chunks())
    return t["levels"].take(pos)


def target_scores(art: Artifacts) -> np.ndarray:
    """Severity of every target window (its most severe line)."""
    from fusionlog.experiment import levels_maps

    return severity_scores(window_levels(art), levels_maps(art.exp).get(art.target, {}))


@register("severity")
class Severity(Method):
    """The most severe level among the window's lines."""

    baseline = True
    cut = "a line logged at error or worse"

    def hash_inputs(self, exp: object) -> object:
        from fusionlog.events import DEFAULT_LEVELS

        return {"score": SCORE, "levels": "line-v2", "spellings": DEFAULT_LEVELS}

    def score(self, art: Artifacts) -> pa.Table:
        return art.table(target_scores(art), "severity")


def top_level_cut(scores: np.ndarray) -> float:
    """The score of the most severe level the system's lines use; above every score (no flag) where that level is
    below ``warn``: a system that logs nothing worse than info has no level that reports trouble."""
    top = float(np.max(scores)) if len(scores) else 0.0
    return top if top >= SCORE["warn"] else 2.0


@register("severity-top")
class SeverityTop(Method):
    """The most severe level among the window's lines, flagged only at the system's most severe level."""

    baseline = True
    cut = "a line logged at the most severe level the system's lines use"

    def hash_inputs(self, exp: object) -> object:
        return {"score": SCORE, "cut": "top-level-v3"}

    def score(self, art: Artifacts) -> pa.Table:
        s = art.scores("severity")["score"].to_numpy()  # the same ranking: only the cut differs
        return art.table(s, "severity", labels=s >= top_level_cut(s))

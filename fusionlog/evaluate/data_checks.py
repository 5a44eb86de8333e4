"""What a reader needs to trust a result: label balance per split, duplicates across splits and systems, the
sessions that lie inside a slice of a longer log."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fusionlog.rundir import table_dir
from fusionlog.train.data import read_windows


def label_balance(run: Path, system: str) -> dict[str, dict[str, int]]:
    """split -> windows, anomalous, normal, unlabeled."""
    t = read_windows(run, system, ["split", "label"])
    out: dict[str, dict[str, int]] = {}
    for split, label in zip(t["split"].to_pylist(), t["label"].to_pylist(), strict=True):
        d = out.setdefault(split, {"windows": 0, "anomalous": 0, "normal": 0, "unlabeled": 0})
        d["windows"] += 1
        d["unlabeled" if label is None else "anomalous" if label else "normal"] += 1
    return out


def _signatures(run: Path, system: str, texts: bool) -> dict[str, set[tuple]]:
    t = read_windows(run, system, ["split", "template_ids"])
    names = {}
    if texts:
        tpl = pq.read_table(table_dir(run, "templates", system), columns=["template_id", "template"])
        names = dict(zip(tpl["template_id"].to_pylist(), tpl["template"].to_pylist(), strict=True))
    out: dict[str, set[tuple]] = {}
    for split, ids in zip(t["split"].to_pylist(), t["template_ids"].to_pylist(), strict=True):
        out.setdefault(split, set()).add(tuple(names.get(i, i) for i in ids) if texts else tuple(ids))
    return out


def duplicates(run: Path, sources: list[str], target: str) -> dict[str, dict[str, float]]:
    """Distinct window signatures (ordered template sequences) of val/test also present in train, per source;
    and target signatures (as template texts) present in any source's train split."""
    out: dict[str, dict[str, float]] = {}
    train_texts: set[tuple] = set()
    for s in sources:
        sig = _signatures(run, s, texts=False)
        train = sig.get("train", set())
        d: dict[str, float] = {"train_distinct": len(train)}
        for split in ("val", "test"):
            other = sig.get(split, set())
            d[f"{split}_distinct"] = len(other)
            d[f"{split}_in_train"] = len(other & train)
        out[s] = d
        train_texts |= _signatures(run, s, texts=True).get("train", set())
    tgt = set().union(*_signatures(run, target, texts=True).values())
    out[target] = {"distinct": len(tgt), "in_source_train": len(tgt & train_texts)}
    return out


def signature_ceiling(labels: list[int], signatures: list[tuple]) -> dict[str, float]:
    """The best F1 any detector that sees only the template sequence can reach: windows with the same
    sequence get the same score, so conflicting labels (e.g. file-level labels) cap it. Scores each
    signature by its anomalous rate and takes the best threshold."""
    stats: dict[tuple, list[int]] = {}
    for y, sig in zip(labels, signatures, strict=True):
        stats.setdefault(sig, [0, 0])[int(y)] += 1
    groups = sorted(stats.values(), key=lambda c: c[1] / (c[0] + c[1]), reverse=True)
    pos = sum(c[1] for c in groups)
    best, tp, fp = 0.0, 0, 0
    for neg_k, pos_k in groups:
        tp, fp = tp + pos_k, fp + neg_k
        if tp:
            best = max(best, 2 * tp / (2 * tp + fp + (pos - tp)))
    conflicting = sum(min(c) for c in groups)
    return {"best_f1": best, "distinct": len(groups), "windows_in_conflict": conflicting}


INSIDE_QUANTILE = 0.99  # the margin: this quantile of the pauses between consecutive lines of one session
INSIDE_MAX_LINES = 2_000_000  # lines read to measure the pauses (the first ones, in the table's order): memory bound
INSIDE_RULE = ("a session lies inside the slice when its first line comes at least M after the slice's first line "
               "and its last line at least M before the slice's last one, M being the 99th percentile of the pauses "
               "between consecutive lines of one session: it started in the slice, and has been quiet for longer "
               "than sessions usually pause when the slice ends")


def inside_slice(run: Path, system: str) -> dict | None:
    """The session windows of a raw log whose life cycle lies inside the slice (:data:`INSIDE_RULE`), for evaluation:
    a slice of a longer log cuts the sessions open at either end, and a label given for the whole session (e.g. from
    a block's fate in the full log) may rest on lines the slice does not hold. ``{"rule", "margin_s", "first",
    "last", "window_ids"}``; None where the windows carry no timestamps or no session has two timed lines."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    w = read_windows(run, system, ["window_id", "start_ts", "end_ts"])
    if not w.num_rows or w["start_ts"].null_count == w.num_rows:
        return None
    parts, seen = [], 0
    for b in ds.dataset(table_dir(run, "lines", system), format="parquet").to_batches(columns=["sessions", "ts"]):
        ses = b.column("sessions")
        parent = pc.list_parent_indices(ses)
        parts.append(pa.table({"session": pc.list_flatten(ses), "ts": pc.take(b.column("ts"), parent)}))
        seen += b.num_rows
        if seen >= INSIDE_MAX_LINES:
            break
    t = pa.concat_tables(parts).drop_null().sort_by([("session", "ascending"), ("ts", "ascending")]) if parts else None
    if t is None or t.num_rows < 2:
        return None
    s = t["session"].to_numpy(zero_copy_only=False)
    ts = t["ts"].cast(pa.timestamp("us")).cast(pa.int64()).to_numpy()  # microseconds, whatever unit it came in
    same = s[1:] == s[:-1]
    if not same.any():
        return None
    margin = float(np.quantile(np.diff(ts)[same], INSIDE_QUANTILE)) / 1e6  # microseconds -> seconds
    first, last = pc.min(w["start_ts"]).as_py(), pc.max(w["end_ts"]).as_py()
    lo, hi = first + dt.timedelta(seconds=margin), last - dt.timedelta(seconds=margin)
    keep = [wid for wid, a, b in zip(w["window_id"].to_pylist(), w["start_ts"].to_pylist(), w["end_ts"].to_pylist(),
                                     strict=True) if a is not None and b is not None and a >= lo and b <= hi]
    return {"rule": INSIDE_RULE, "margin_s": margin, "first": first.isoformat(), "last": last.isoformat(),
            "window_ids": keep}

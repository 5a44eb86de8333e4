"""What a reader needs to trust a result: label balance per split, duplicates across splits and systems."""

from __future__ import annotations

from pathlib import Path

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

"""Log-parsing metrics as defined by loghub: grouping accuracy (GA) and parsing accuracy (PA).

Both take one entry per log line, in the same order as the ground truth. A prediction of ``None``
means the line could not be parsed at all; such a line always counts as wrong.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence


def _norm(template: str) -> str:
    return " ".join(template.split())


def grouping_accuracy(gt_templates: Sequence[str], pred_ids: Sequence[Hashable | None]) -> float:
    """Fraction of lines whose predicted group is exactly one ground-truth group.

    Lines are grouped by their ground-truth template (whitespace-collapsed) and by their predicted id.
    A predicted group is correct when all its lines share one ground-truth template *and* it holds every
    line of that template (no split, no merge); GA is the number of lines in correct groups over all
    lines (loghub, Zhu et al. ICSE-SEIP 2019). Lines predicted ``None`` (unparsed) are never correct.
    """
    if len(gt_templates) != len(pred_ids):
        raise ValueError(f"{len(gt_templates)} ground-truth lines but {len(pred_ids)} predictions")
    if not gt_templates:
        return 0.0
    gt = [_norm(t) for t in gt_templates]
    gt_sizes = Counter(gt)
    groups: dict[Hashable, list[str]] = defaultdict(list)
    for truth, pid in zip(gt, pred_ids, strict=True):
        if pid is not None:
            groups[pid].append(truth)
    correct = 0
    for members in groups.values():
        first = members[0]
        if gt_sizes[first] == len(members) and all(t == first for t in members):
            correct += len(members)
    return correct / len(gt)


def parsing_accuracy(gt_templates: Sequence[str], pred_templates: Sequence[str | None]) -> float:
    """Fraction of lines whose predicted template equals the ground truth, whitespace collapsed.

    This is the strict per-line template match of loghub-2.0 (a ``None`` prediction is wrong).
    """
    if len(gt_templates) != len(pred_templates):
        raise ValueError(f"{len(gt_templates)} ground-truth lines but {len(pred_templates)} predictions")
    if not gt_templates:
        return 0.0
    pairs = zip(gt_templates, pred_templates, strict=True)
    hits = sum(p is not None and _norm(p) == _norm(t) for t, p in pairs)
    return hits / len(gt_templates)

"""Windows as the labeler sees them: template texts in order and a window vector for retrieval."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from fusionlog.llm.cache import signature
from fusionlog.llm.knowledge import window_vector
from fusionlog.llm.label import Window
from fusionlog.rundir import table_dir
from fusionlog.train.data import read_windows, template_index


class WindowMaker:
    """Reads a system's template texts and vectors once; makes :class:`Window` objects from template ids."""

    def __init__(self, run: Path, system: str) -> None:
        tpl = pq.read_table(table_dir(run, "templates", system), columns=["template_id", "template"])
        self.text = dict(zip(tpl["template_id"].to_pylist(), tpl["template"].to_pylist(), strict=True))
        self.system = system
        self.index = template_index(run, [system])
        self.vectors = self.index.vectors.numpy()

    def __call__(self, window_id: str, ids: list[int]) -> Window:
        rows = np.array(self.index.rows(self.system, [ids], 10**6)[0]) - 1
        return Window(window_id, ids, [self.text[i] for i in ids], window_vector(self.vectors[rows]))


@dataclass
class Item:
    """A distinct labeled window of a system (its majority label)."""

    window: Window
    label: int  # majority label of the windows with this sequence
    windows: int  # how many windows share it


def labeled_items(run: Path, system: str, split: str) -> list[Item]:
    """One item per distinct template sequence of ``system``'s labeled windows in ``split``."""
    t = read_windows(run, system, ["template_ids", "label", "split"])
    make = WindowMaker(run, system)
    groups: dict[str, list] = {}
    for ids, y, s in zip(t["template_ids"].to_pylist(), t["label"].to_pylist(), t["split"].to_pylist(), strict=True):
        if s == split and y is not None:
            groups.setdefault(signature(ids), [ids, []])[1].append(y)
    return [Item(make(sig, ids), int(np.mean(ys) >= 0.5), len(ys)) for sig, (ids, ys) in groups.items()]

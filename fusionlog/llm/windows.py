"""Windows as the labeler sees them: template texts in order and a window vector for retrieval."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from fusionlog.llm.knowledge import window_vector
from fusionlog.llm.label import Window
from fusionlog.rundir import table_dir
from fusionlog.train.data import template_index


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

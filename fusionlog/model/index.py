"""One row per embedded template across systems; windows become right-padded rows of indices."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch


class TemplateIndex:
    """(system, template_id) -> row of the model's template table (row 0 is padding)."""

    def __init__(self, store: pa.Table) -> None:
        systems = store["system"].to_pylist()
        ids = store["template_id"].to_pylist()
        self.row = {(s, int(t)): k + 1 for k, (s, t) in enumerate(zip(systems, ids, strict=True))}
        self.vectors = torch.from_numpy(np.stack(store["vector"].to_numpy(zero_copy_only=False)).astype(np.float32))

    def windows(self, system: str, template_ids: list[list[int]], max_len: int) -> torch.Tensor:
        """(batch, time) long tensor; a window longer than ``max_len`` keeps its last ``max_len`` templates."""
        try:
            rows = [[self.row[(system, int(t))] for t in ids[-max_len:]] for ids in template_ids]
        except KeyError as exc:
            raise ValueError(f"template {exc.args[0]} has no vector: run `fusionlog embed`") from None
        width = max(1, max((len(r) for r in rows), default=1))
        out = torch.zeros(len(rows), width, dtype=torch.long)
        for k, r in enumerate(rows):
            out[k, : len(r)] = torch.tensor(r, dtype=torch.long)
        return out

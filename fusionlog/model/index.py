"""One row per embedded template across systems; windows become right-padded rows of indices."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch


class TemplateIndex:
    """(system, template_id) -> row of the model's template table (row 0 is padding). ``features``, when given,
    holds each system's event features (:mod:`fusionlog.model.features`), appended to the semantic vectors."""

    def __init__(self, store: pa.Table, features: dict[str, dict[int, np.ndarray]] | None = None,
                 extra: int = 0) -> None:
        systems = store["system"].to_pylist()
        ids = store["template_id"].to_pylist()
        self.row = {(s, int(t)): k + 1 for k, (s, t) in enumerate(zip(systems, ids, strict=True))}
        vec = store["vector"].to_numpy(zero_copy_only=False)
        mat = np.stack(vec).astype(np.float32) if len(vec) else np.zeros((0, 1), np.float32)
        if extra:
            try:
                feats = np.stack([features[s][int(t)] for s, t in zip(systems, ids, strict=True)]) if len(ids) \
                    else np.zeros((0, extra), np.float32)
            except KeyError as exc:
                raise ValueError(f"template {exc.args[0]} has a vector but no event features: re-run the events "
                                 "stage") from None
            mat = np.concatenate([mat, feats.astype(np.float32)], 1)
        self.vectors = torch.from_numpy(mat)

    def rows(self, system: str, template_ids: list[list[int]], max_len: int) -> list[np.ndarray]:
        """One int32 array of table rows per window; a window longer than ``max_len`` keeps its last ones."""
        row = self.row
        try:
            return [np.fromiter((row[(system, int(t))] for t in ids[-max_len:]), np.int32) for ids in template_ids]
        except KeyError as exc:
            raise ValueError(f"template {exc.args[0]} has no vector: run `fusionlog embed`") from None

    def windows(self, system: str, template_ids: list[list[int]], max_len: int) -> torch.Tensor:
        """(batch, time) long tensor, right-padded with 0."""
        return pad(self.rows(system, template_ids, max_len))


def pad(rows: list[np.ndarray]) -> torch.Tensor:
    """Right-pad rows of template indices with 0 into a (batch, time) long tensor."""
    width = max(1, max((len(r) for r in rows), default=1))
    out = np.zeros((len(rows), width), np.int64)
    for k, r in enumerate(rows):
        out[k, : len(r)] = r
    return torch.from_numpy(out)

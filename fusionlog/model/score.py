"""Score windows with a trained small model: P(anomalous) per window."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from fusionlog.config import ModelConfig
from fusionlog.model.small import SmallModel, load_into
from fusionlog.train.data import read_windows, template_index
from fusionlog.train.loop import WEIGHTS
from fusionlog.train.steps import predict


class WindowScorer:
    """A trained model (``<run>/models/<target>/<name>/``) with the template table of the run's store."""

    def __init__(self, run: Path, model_dir: Path, systems: list[str], device: str = "cpu") -> None:
        self.model_dir = Path(model_dir)
        meta = json.loads((self.model_dir / "model.json").read_text())
        self.cfg = ModelConfig(**{"event_features": [], **meta["model"]})  # (models saved before features: none)
        self.index = template_index(run, systems, self.cfg.event_features)
        self.device = torch.device(device)
        self.model = load_into(SmallModel(self.index.vectors, self.cfg), Path(model_dir) / WEIGHTS).to(self.device)

    def scores(self, system: str, template_ids: list[list[int]]) -> np.ndarray:
        return predict(self.model, self.index.rows(system, template_ids, self.cfg.max_len), self.device)


def score_system(run: Path, model_dir: Path, system: str) -> tuple[list[str], np.ndarray]:
    """(window ids, P(anomalous)) for every window of ``system``."""
    table = read_windows(run, system, ["window_id", "template_ids"])
    scorer = WindowScorer(run, model_dir, [system])
    return table["window_id"].to_pylist(), scorer.scores(system, table["template_ids"].to_pylist())

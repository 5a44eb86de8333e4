"""The small model: BiGRU + attention over the template vectors of a window, a classifier head, and a
domain discriminator behind a gradient-reversal layer (adversarial domain alignment).

Windows are given as rows of template indices into one frozen embedding table (row 0 = padding), so
vectors are looked up by template id and never materialised per window.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fusionlog.config import ModelConfig


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, lam: float) -> torch.Tensor:  # noqa: ANN001
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        return -ctx.lam * grad, None


def grad_reverse(x: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    """Identity forward; multiplies the gradient by ``-lam`` backward."""
    return _GradReverse.apply(x, lam)


class SmallModel(nn.Module):
    def __init__(self, vectors: torch.Tensor, cfg: ModelConfig, n_domains: int = 2) -> None:
        super().__init__()
        dim = vectors.shape[1]
        table = torch.cat([torch.zeros(1, dim), vectors.float()])  # row 0: padding
        self.embed = nn.Embedding.from_pretrained(table, freeze=True, padding_idx=0)
        self.gru = nn.GRU(dim, cfg.hidden, num_layers=cfg.layers, batch_first=True, bidirectional=True,
                          dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        width = 2 * cfg.hidden
        self.attn = nn.Linear(width, 1)
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(width, cfg.hidden), nn.ReLU(),
                                  nn.Linear(cfg.hidden, 2))
        self.domain = nn.Sequential(nn.Linear(width, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, n_domains))

    def encode(self, idx: torch.Tensor) -> torch.Tensor:
        """(batch, time) template indices, 0-padded on the right -> (batch, 2*hidden) window vectors."""
        mask = idx > 0
        lengths = mask.sum(1).clamp(min=1)
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(idx), lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=idx.shape[1])
        scores = self.attn(out).squeeze(-1).masked_fill(~mask, float("-inf"))
        scores = torch.where(mask.any(1, keepdim=True), scores, torch.zeros_like(scores))
        weights = torch.softmax(scores, dim=1).unsqueeze(-1)
        return (weights * out).sum(1)

    def forward(self, idx: torch.Tensor, lam: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits (batch, 2) and domain logits (batch, n_domains) through the reversal layer."""
        z = self.encode(idx)
        return self.head(z), self.domain(grad_reverse(z, lam))


def trainable_state(model: SmallModel) -> dict[str, torch.Tensor]:
    """The weights to save (the frozen template table is rebuilt from the vector store)."""
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not k.startswith("embed.")}


def save(model: SmallModel, path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(trainable_state(model), str(tmp))
    tmp.replace(path)


def load_into(model: SmallModel, path: Path) -> SmallModel:
    """Load safetensors weights (no pickle) into a model built with the same config and vectors."""
    from safetensors.torch import load_file

    try:
        missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    except RuntimeError as exc:  # shape mismatch
        raise ValueError(f"{path}: weights do not fit the model ({str(exc).splitlines()[0]})") from None
    if unexpected or [k for k in missing if not k.startswith("embed.")]:
        raise ValueError(f"{path}: weights do not fit the model (missing {missing}, unexpected {unexpected})")
    return model

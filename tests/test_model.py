"""The small model: padding-invariant attention, gradient reversal, frozen vectors, safetensors I/O."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from fusionlog.config import ModelConfig
from fusionlog.model.index import TemplateIndex
from fusionlog.model.small import SmallModel, grad_reverse, load_into, save


@pytest.fixture()
def index() -> TemplateIndex:
    rng = np.random.default_rng(0)
    vec = rng.normal(size=(6, 16)).astype(np.float32)
    store = pa.table({"system": ["A", "A", "A", "B", "B", "B"], "template_id": [1, 2, 3, 1, 2, 7],
                      "vector": pa.FixedSizeListArray.from_arrays(pa.array(vec.ravel()), 16)})
    return TemplateIndex(store)


def test_index_looks_up_by_system_and_id(index: TemplateIndex) -> None:
    x = index.windows("B", [[7, 1], [2]], max_len=8)
    assert x.tolist() == [[6, 4], [5, 0]]
    assert index.windows("A", [[1, 2, 3, 1]], max_len=2).tolist() == [[3, 1]]  # keeps the last max_len
    with pytest.raises(ValueError, match="no vector"):
        index.windows("A", [[9]], max_len=4)


def test_padding_does_not_change_the_output(index: TemplateIndex) -> None:
    torch.manual_seed(0)
    m = SmallModel(index.vectors, ModelConfig(hidden=8, layers=2, dropout=0.0)).eval()
    short = index.windows("A", [[1, 2, 3]], max_len=8)
    padded = torch.cat([short, torch.zeros(1, 5, dtype=torch.long)], dim=1)
    with torch.no_grad():
        a, _ = m(short)
        b, _ = m(torch.cat([padded, index.windows("A", [[1, 2, 3, 1, 2, 3, 1, 2]], 8)]))
    assert torch.allclose(a[0], b[0], atol=1e-6)
    assert not m.embed.weight.requires_grad


def test_gradient_reversal() -> None:
    x = torch.ones(3, requires_grad=True)
    grad_reverse(x, 0.5).sum().backward()
    assert x.grad.tolist() == [-0.5, -0.5, -0.5]


def test_domain_loss_pushes_the_encoder_the_other_way(index: TemplateIndex) -> None:
    torch.manual_seed(0)
    m = SmallModel(index.vectors, ModelConfig(hidden=8, layers=1, dropout=0.0))
    x = index.windows("A", [[1, 2], [3]], 4)
    y = torch.tensor([0, 1])

    def encoder_grad(lam: float) -> torch.Tensor:
        m.zero_grad()
        _, d = m(x, lam)
        torch.nn.functional.cross_entropy(d, y).backward()
        return m.gru.weight_ih_l0.grad.clone()

    assert torch.allclose(encoder_grad(1.0), -encoder_grad(-1.0), atol=1e-6)
    assert encoder_grad(0.0).abs().sum() == 0


def test_safetensors_round_trip(index: TemplateIndex, tmp_path: Path) -> None:
    cfg = ModelConfig(hidden=8, layers=1, dropout=0.0)
    torch.manual_seed(1)
    a = SmallModel(index.vectors, cfg).eval()
    save(a, tmp_path / "sm.safetensors")
    assert (tmp_path / "sm.safetensors").read_bytes()[:8] != b"\x80\x04\x95"  # not a pickle
    torch.manual_seed(2)
    b = load_into(SmallModel(index.vectors, cfg).eval(), tmp_path / "sm.safetensors")
    x = index.windows("B", [[1, 2, 7]], 8)
    with torch.no_grad():
        assert torch.allclose(a(x)[0], b(x)[0])
    with pytest.raises(ValueError, match="do not fit"):
        load_into(SmallModel(index.vectors, ModelConfig(hidden=4, layers=1)), tmp_path / "sm.safetensors")

"""The router on a case built by hand, where the right route of every window is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from fusionlog import contracts
from fusionlog.config import EmbedConfig, RouteConfig
from fusionlog.embed.stage import embed
from fusionlog.route.router import threshold, window_xsim
from fusionlog.route.stage import route


def _templates(run: Path, system: str, texts: list[str]) -> None:
    d = run / "templates" / f"system={system}"
    d.mkdir(parents=True)
    pq.write_table(pa.table({"template_id": list(range(1, len(texts) + 1)), "template": texts,
                             "count": [1] * len(texts)}, schema=contracts.TEMPLATES), d / "part-0.parquet")


def _windows(run: Path, system: str, windows: dict[str, list[int]]) -> None:
    n = len(windows)
    cols = {f.name: pa.nulls(n, f.type) for f in contracts.WINDOWS}
    cols["window_id"] = pa.array(list(windows))
    cols["template_ids"] = pa.array(list(windows.values()), pa.list_(pa.int64()))
    d = run / "windows" / f"system={system}"
    d.mkdir(parents=True)
    pq.write_table(pa.table(cols, schema=contracts.WINDOWS), d / "part-0.parquet")


def test_route_by_hand(ray_local, tmp_path: Path) -> None:
    _templates(tmp_path, "SRC", ["Receiving block <*> src: <*> dest: <*>", "user <*> logged in from <*>"])
    _templates(tmp_path, "TGT", ["Receiving block <*> src: <*> dest: <*>",  # the same event as in the source
                                 "machine check interrupt: L2 cache parity error on core <*>"])  # unseen
    _windows(tmp_path, "TGT", {"known": [1, 1, 1], "mixed": [1, 2, 1], "unseen": [2]})
    embed(tmp_path, EmbedConfig())
    r = route(tmp_path, ["SRC"], "TGT", RouteConfig(tau=0.9), sweep=True)
    out = ds.dataset(tmp_path / "routes/system=TGT").to_table().to_pydict()
    got = dict(zip(out["window_id"], out["route"], strict=True))
    assert got == {"known": "general", "mixed": "proprietary", "unseen": "proprietary"}
    xs = dict(zip(out["window_id"], out["x_sim"], strict=True))
    assert xs["known"] == pytest.approx(1.0, abs=1e-4) and xs["mixed"] == xs["unseen"] < 0.6
    assert (r.general, r.proprietary) == (1, 2) and len(r.sweep) == 9
    # default tau: the mean of x_sim, which separates the known window from the other two as well
    r2 = route(tmp_path, ["SRC"], "TGT")
    assert r2.tau == pytest.approx(np.mean(list(xs.values())), abs=1e-5) and r2.general == 1
    with pytest.raises(ValueError, match="also a source"):
        route(tmp_path, ["TGT"], "TGT")


def test_xsim_and_threshold_units() -> None:
    sim = {1: 0.9, 2: 0.3, 3: 0.7}
    assert list(window_xsim([[1, 3], [2], [1, 2, 3]], sim)) == pytest.approx([0.7, 0.3, 0.3])
    with pytest.raises(ValueError, match="has no vector"):
        window_xsim([[4]], sim)
    xs = np.array([0.2, 0.4, 0.9], np.float32)
    assert threshold(xs, None, None) == pytest.approx(0.5)
    assert threshold(xs, 0.7, None) == 0.7 and threshold(xs, None, 0.5) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="not both"):
        RouteConfig(tau=0.5, tau_quantile=0.5)

"""Template similarity to the sources, and the route of each target window.

For each target template i: ``sim_i = max_j cos(v_i, u_j)`` over the source templates j (an exact
matrix product when small, a LanceDB nearest-neighbour search otherwise). For a window:
``x_sim = min_i sim_i`` over its templates; ``general`` if ``x_sim >= tau`` else ``proprietary``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def _vectors(store: pa.Table, systems: list[str]) -> tuple[np.ndarray, np.ndarray]:
    sel = store.filter(pc.is_in(store["system"], value_set=pa.array(systems)))
    ids = sel["template_id"].to_numpy()
    vec = np.stack(sel["vector"].to_numpy(zero_copy_only=False)).astype(np.float32) if sel.num_rows else None
    return ids, vec


def template_similarity(store: pa.Table, sources: list[str], target: str, exact_max_pairs: int,
                        table=None) -> dict[int, float]:  # noqa: ANN001
    """target template id -> max cosine similarity to any source template (vectors are unit length)."""
    src_ids, src = _vectors(store, sources)
    tgt_ids, tgt = _vectors(store, [target])
    if src is None:
        raise ValueError(f"no embedded templates for the sources {sources}: run `fusionlog embed` on them")
    if tgt is None:
        raise ValueError(f"no embedded templates for the target {target!r}: run `fusionlog embed`")
    if len(src_ids) * len(tgt_ids) <= exact_max_pairs or table is None:
        sims = np.empty(len(tgt_ids), np.float32)
        for s in range(0, len(tgt_ids), 4096):  # bounded memory: 4096 target rows at a time
            sims[s : s + 4096] = (tgt[s : s + 4096] @ src.T).max(axis=1)
    else:
        where = "system IN (" + ", ".join("'" + s.replace("'", "''") + "'" for s in sources) + ")"
        sims = np.array([
            1.0 - table.search(v).metric("cosine").where(where, prefilter=True).limit(1).to_list()[0]["_distance"]
            for v in tgt
        ], np.float32)
    return dict(zip(tgt_ids.tolist(), sims.tolist(), strict=True))


def window_xsim(template_ids: list[list[int]], sim: dict[int, float]) -> np.ndarray:
    """x_sim of each window: the smallest template similarity in it (an unknown template raises)."""
    out = np.empty(len(template_ids), np.float32)
    for k, ids in enumerate(template_ids):
        try:
            out[k] = min(sim[i] for i in ids) if len(ids) else np.nan
        except KeyError as exc:
            missing = exc.args[0]
            raise ValueError(f"template {missing} of a target window has no vector: run `fusionlog embed`") from None
    return out


def threshold(xsim: np.ndarray, tau: float | None, quantile: float | None) -> float:
    """tau: the given value, a quantile of x_sim, or (the paper's default) the mean of x_sim."""
    if tau is not None:
        return float(tau)
    finite = xsim[np.isfinite(xsim)]
    if quantile is not None:
        return float(np.quantile(finite, quantile))
    return float(finite.mean())

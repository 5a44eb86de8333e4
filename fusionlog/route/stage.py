"""``fusionlog route``: windows/ of the target + the LanceDB template vectors -> routes/ (Ray Data)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fusionlog.config import RouteConfig
from fusionlog.embed.stage import TABLE, open_store, stored
from fusionlog.io import atomic_dir, atomic_write_text
from fusionlog.ray_runtime import init_ray, wait_for_resources
from fusionlog.route.router import template_similarity, threshold, window_xsim
from fusionlog.rundir import lancedb_dir, route_stats_file, table_dir

ROUTES = pa.schema([("window_id", pa.string()), ("x_sim", pa.float32()), ("route", pa.string())])
SWEEP = [round(0.5 + 0.05 * k, 2) for k in range(9)]  # 0.50 .. 0.90


@dataclass
class RouteResult:
    target: str
    sources: list[str]
    tau: float
    windows: int
    general: int
    proprietary: int
    seconds: float
    sweep: list[dict] = field(default_factory=list)


TASK_CPUS = 0.25  # per Ray Data task of the router


def route(run: Path, sources: list[str], target: str, cfg: RouteConfig | None = None,
          sweep: bool = False) -> RouteResult:
    """Route every window of ``target``; the target's labels are not read."""
    import ray

    cfg = cfg or RouteConfig()
    run = Path(run)
    if target in sources:
        raise ValueError(f"the target {target!r} is also a source")
    wdir = table_dir(run, "windows", target)
    if not wdir.is_dir():
        raise FileNotFoundError(f"{wdir} not found: ingest the target first")
    t0 = time.perf_counter()
    store = stored(run)
    if store is None:
        raise FileNotFoundError(f"{lancedb_dir(run)} has no '{TABLE}' table: run `fusionlog embed` first")
    table = open_store(run).open_table(TABLE)
    sim = template_similarity(store, sources, target, cfg.exact_max_pairs, table)

    init_ray()

    def xsim(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"window_id": batch["window_id"], "x_sim": window_xsim(list(batch["template_ids"]), sim)}

    # small CPU claims (a read task takes 1 CPU by default): routing must run beside an LLM replica on 2 cores
    wait_for_resources({"CPU": 2 * TASK_CPUS}, f"route {target}", cfg.resource_wait_s)
    ds = ray.data.read_parquet(str(wdir), num_cpus=TASK_CPUS).select_columns(
        ["window_id", "template_ids"])
    parts = list(ds.map_batches(xsim, batch_format="numpy", num_cpus=TASK_CPUS).iter_batches(batch_format="numpy",
                                                                                               batch_size=None))
    ids = np.concatenate([p["window_id"] for p in parts]) if parts else np.array([], object)
    xs = np.concatenate([p["x_sim"] for p in parts]).astype(np.float32) if parts else np.array([], np.float32)
    tau = threshold(xs, cfg.tau, cfg.tau_quantile) if len(xs) else float("nan")
    general = xs >= tau
    out = pa.table({"window_id": pa.array(ids.tolist(), pa.string()), "x_sim": pa.array(xs),
                    "route": pa.array(np.where(general, "general", "proprietary").tolist())}, schema=ROUTES)
    with atomic_dir(table_dir(run, "routes", target)) as tmp:
        tmp.mkdir()
        pq.write_table(out, tmp / "part-0.parquet")
    res = RouteResult(target, sources, tau, len(xs), int(general.sum()), int((~general).sum()),
                      time.perf_counter() - t0)
    if sweep:
        res.sweep = [{"tau": t, "general": int((xs >= t).sum()), "proprietary": int((xs < t).sum())} for t in SWEEP]
    atomic_write_text(route_stats_file(run, target), json.dumps(asdict(res), indent=2))
    return res

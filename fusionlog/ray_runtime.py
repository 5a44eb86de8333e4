"""Ray: a local cluster by default, the one in ``RAY_ADDRESS`` when set; and bounded waits on its resources.

Every wait on cluster resources (the LLM app's replicas, Ray Train's worker group, Ray Data's actors) has a
deadline; when it passes, :class:`ResourceWaitError` names what was asked for, what the cluster has, and who
holds it (placement groups and the actors that hold CPUs/GPUs), so a person can see why it could not start.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator


class ResourceWaitError(RuntimeError):
    """A stage waited past its deadline for cluster resources."""


def init_ray(num_cpus: int | None = None) -> None:
    """Connect to ``RAY_ADDRESS`` or start a local Ray (no dashboard); idempotent."""
    import warnings

    import ray

    # Ray starts its workers with fork+exec; lancedb's warning about fork() does not apply to that
    warnings.filterwarnings("ignore", message="lancedb fork support", category=RuntimeWarning)
    if ray.is_initialized():
        return
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
        return
    ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False,
             configure_logging=False, _node_ip_address="127.0.0.1")


@contextlib.contextmanager
def own_local_ray() -> Iterator[None]:
    """Shut down, on the way out, the local Ray that the body started (none is shut down that was running before it,
    nor a cluster named by ``RAY_ADDRESS``): each experiment of a ``fusionlog results`` call or a LOSO fold starts
    with a fresh local cluster. On one long-lived local cluster, the Ray Data encoder actor of a second fresh embed
    stage, after a first experiment's training, has been seen not to start within its deadline with CPUs free
    (docs/pipeline.md, "Liveness"); a cluster per experiment has not shown it."""
    import ray

    before = ray.is_initialized()
    try:
        yield
    finally:
        if not before and ray.is_initialized() and not os.environ.get("RAY_ADDRESS"):
            ray.shutdown()


def _fmt(res: dict[str, float]) -> str:
    """CPUs, GPUs and custom resources (not memory, node or placement-group bookkeeping keys)."""
    skip = ("node:", "accelerator_type:", "bundle_group", "memory", "object_store_memory")
    keep = {k: v for k, v in res.items() if v and not k.startswith(skip) and "_group_" not in k}
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(keep.items())) + "}"


def holders() -> str:
    """Who holds the cluster's resources: totals, what is free, the placement groups and the actors holding CPUs/GPUs
    (a line each)."""
    import ray

    lines = [f"cluster: {_fmt(ray.cluster_resources())}, free: {_fmt(ray.available_resources())}"]
    for pg in ray.util.placement_group_table().values():
        if pg.get("state") == "REMOVED":
            continue
        bundles = [_fmt(b) for b in pg.get("bundles", {}).values()]
        lines.append(f"placement group {pg.get('name') or pg.get('placement_group_id')} ({pg.get('state')}): "
                     f"{', '.join(bundles)}")
    try:  # the state API: actors alive and what they asked for (not every cluster serves it)
        from ray.util.state import list_actors

        for a in list_actors(filters=[("state", "=", "ALIVE")], detail=True, timeout=10, raise_on_missing_output=False):
            asked = getattr(a, "required_resources", None) or {}
            need = {k: v for k, v in asked.items() if k in ("CPU", "GPU") and v}
            if need:
                lines.append(f"actor {a.class_name} {a.name or ''} (pid {a.pid}): {_fmt(need)}".replace("  ", " "))
    except Exception as exc:  # noqa: BLE001 (a diagnosis must not hide the error it explains)
        lines.append(f"(actors not listed: {type(exc).__name__})")
    return "\n  ".join(lines)


def wait_for_resources(demand: dict[str, float], what: str, deadline_s: float, poll_s: float = 1.0,
                       say: Callable[[str], None] | None = None) -> None:
    """Block until the cluster has ``demand`` free (e.g. ``{"CPU": 1}``) or fail after ``deadline_s`` with who holds
    what. A demand larger than the whole cluster fails at once."""
    import ray

    total = ray.cluster_resources()
    short = {k: v for k, v in demand.items() if v > total.get(k, 0.0) + 1e-9}
    if short and not os.environ.get("RAY_ADDRESS"):  # a local cluster does not grow; an autoscaler may add nodes
        raise ResourceWaitError(f"{what} asks for {_fmt(demand)}, more than this Ray cluster has at all:\n  "
                                + holders())
    deadline, told = time.monotonic() + deadline_s, False
    while True:
        free = ray.available_resources()
        if all(free.get(k, 0.0) + 1e-9 >= v for k, v in demand.items()):
            return
        if time.monotonic() > deadline:
            raise ResourceWaitError(f"{what} waited {deadline_s:.0f} s for {_fmt(demand)} and did not get it:\n  "
                                    + holders())
        if say and not told:
            say(f"{what}: waiting up to {deadline_s:.0f} s for {_fmt(demand)} (free now: {_fmt(free)})")
            told = True
        time.sleep(poll_s)


def fit_cpus(want: float, workers: int, floor: float) -> float:
    """CPUs per worker: ``want``, or what is free shared by ``workers`` when less (never below ``floor``).

    Ray's CPUs are a scheduling claim: a trainer beside an idle LLM replica on a small machine can run on a fraction
    of a logical CPU instead of waiting for a whole one that will never be released."""
    import ray

    free = ray.available_resources().get("CPU", 0.0)
    return max(floor, min(want, round(free / max(workers, 1), 3)))

"""Ray: a local cluster by default, the one in ``RAY_ADDRESS`` when set."""

from __future__ import annotations

import os


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

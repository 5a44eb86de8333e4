"""``fusionlog train``: a Ray Train ``TorchTrainer`` over the bundle; the best checkpoint (by the sources'
val split) is copied to ``<run>/models/<target>/<name>/`` (safetensors + model.json), atomically."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fusionlog.config import ModelConfig, TrainConfig
from fusionlog.io import atomic_dir
from fusionlog.ray_runtime import init_ray
from fusionlog.train.data import Pseudo, build_bundle
from fusionlog.train.loop import WEIGHTS, train_loop_per_worker


@dataclass
class TrainResult:
    name: str
    model_dir: str
    sources: list[str]
    target: str | None
    mode: str
    seed: int
    best_step: int
    val: dict
    seconds: float
    windows: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    reused: bool = False


def config_hash(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def model_dir(run: Path, target: str | None, name: str) -> Path:
    return Path(run) / "models" / (target or "_sources") / name


def _store_version(run: Path, systems: list[str]) -> str:
    """Changes whenever the embedded templates of ``systems`` (or the embedding model) change."""
    from fusionlog.embed.stage import stored

    store = stored(run)
    if store is None:
        return ""
    rows = sorted(zip(store["system"].to_pylist(), store["template_id"].to_pylist(), store["template"].to_pylist(),
                      store["model"].to_pylist(), strict=True))
    return config_hash([r for r in rows if r[0] in systems])


def train(run: Path, sources: list[str], target: str | None, cfg: TrainConfig | None = None,
          mcfg: ModelConfig | None = None, name: str | None = None, reuse: bool = True, pseudo: Pseudo | None = None,
          init_from: Path | None = None, align_all: bool = False) -> TrainResult:
    """Train the small model on ``sources`` (aligned to ``target``'s general windows in ``meta_align``, or all
    of them with ``align_all``); ``pseudo`` adds pseudo-labeled target windows; ``init_from`` fine-tunes."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig, TrainingFailedError
    from ray.train.torch import TorchTrainer

    cfg, mcfg = cfg or TrainConfig(), mcfg or ModelConfig()
    run = Path(run).resolve()
    name = name or f"{cfg.mode}-s{cfg.seed}"
    out = model_dir(run, target, name)
    init_key = json.loads((Path(init_from) / "model.json").read_text())["config_hash"] if init_from else None
    pseudo_key = config_hash(pseudo.system, pseudo.template_ids, pseudo.labels) if pseudo else None
    key = config_hash(sources, target, cfg.model_dump(exclude={"max_failures"}), mcfg.model_dump(),
                      _store_version(run, [*sources, *([target] if target else [])]), init_key, pseudo_key, align_all)
    meta = out / "model.json"
    if reuse and meta.exists() and json.loads(meta.read_text())["config_hash"] == key:
        res = TrainResult(**json.loads(meta.read_text())["result"])
        res.reused = True
        return res
    if target in sources:
        raise ValueError(f"the target {target!r} is also a source")
    t0 = time.perf_counter()
    bundle, _ = build_bundle(run, sources, target if cfg.mode == "meta_align" or pseudo else None, cfg.slices,
                             mcfg.max_len, cfg.max_train_windows, cfg.min_align_windows, pseudo, align_all)
    if cfg.mode != "meta_align":  # the target's windows are in the bundle only for the pseudo-labels
        bundle.part[bundle.part == "target"] = "unused"
    counts = {p: int((bundle.part == p).sum()) for p in ("train", "val", "target")}
    init_ray()
    scaling = ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                            resources_per_worker={"CPU": cfg.cpus_per_worker, **({"GPU": 1} if cfg.use_gpu else {})})
    storage = run / "ray_train"
    storage.mkdir(parents=True, exist_ok=True)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"train": cfg.model_dump(), "model": mcfg.model_dump(), "bundle": ray.put(bundle),
                           "init_from": str(Path(init_from).resolve()) if init_from else None},
        scaling_config=scaling,
        run_config=RunConfig(name=f"{target or '_sources'}-{name}-{key}", storage_path=str(storage),
                             checkpoint_config=CheckpointConfig(num_to_keep=1),
                             failure_config=FailureConfig(max_failures=cfg.max_failures)),
    )
    try:
        result = trainer.fit()
    except TrainingFailedError as exc:
        raise RuntimeError(f"training {name} failed: {exc}") from exc
    if result.checkpoint is None:
        raise RuntimeError(f"training {name} reported no checkpoint")
    best = max((m for _, m in result.best_checkpoints), key=lambda m: m["val_score"]) if result.best_checkpoints \
        else result.metrics
    res = TrainResult(name, str(out), sources, target, cfg.mode, cfg.seed, int(best["step"]),
                      {k: float(v) for k, v in best.items() if k.startswith("val_")}, time.perf_counter() - t0,
                      counts, bundle.notes)
    with atomic_dir(out) as tmp:
        tmp.mkdir()
        with result.checkpoint.as_directory() as ckpt:
            shutil.copy2(Path(ckpt) / WEIGHTS, tmp / WEIGHTS)
        (tmp / "model.json").write_text(json.dumps(
            {"config_hash": key, "sources": sources, "target": target, "train": cfg.model_dump(),
             "model": mcfg.model_dump(), "result": asdict(res)}, indent=2))
    shutil.rmtree(storage / f"{target or '_sources'}-{name}-{key}", ignore_errors=True)
    return res

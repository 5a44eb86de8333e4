"""The Ray Train worker loop (``TorchTrainer``): build the model, draw batches, step, validate, checkpoint.

Every worker holds the (small) bundle of template-row sequences and trains on its share of each task
(rows ``rank::world_size``). Rank 0 validates on the sources' val split every ``eval_every`` steps and
reports a checkpoint (safetensors) only when the val score improves, so the last checkpoint is the best.
The target's labels are not in the bundle.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fusionlog.config import ModelConfig, TrainConfig
from fusionlog.evaluate.metrics import binary_metrics
from fusionlog.model.small import SmallModel, load_into, save
from fusionlog.train.data import Bundle
from fusionlog.train.steps import align_lambda, balanced, make_batch, meta_step, predict, supervised_step

WEIGHTS = "model.safetensors"


def _val_score(model: torch.nn.Module, b: Bundle, device: torch.device) -> dict[str, float]:
    idx = b.where("val")
    if len(idx) == 0:
        return {"val_f1": 0.0, "val_pr_auc": 0.0, "val_score": 0.0}
    p = predict(model, [b.seqs[i] for i in idx], device)
    y = b.label[idx]
    m = binary_metrics(y, p)
    eps = 1e-7
    loss = float(-np.mean(np.where(y == 1, np.log(p + eps), np.log(1 - p + eps))))
    # F1 first; the val log-loss breaks ties (e.g. early steps where F1 is 0 everywhere)
    return {"val_f1": m["f1"], "val_pr_auc": m["pr_auc"], "val_loss": loss, "val_score": m["f1"] - 1e-3 * loss}


def run_training(b: Bundle, cfg: TrainConfig, mcfg: ModelConfig, rank: int, world: int, device: torch.device,
                 wrap=None, report=None, init_from: str | None = None,  # noqa: ANN001
                 steps_file: str | None = None) -> None:
    """The loop proper; ``wrap`` prepares the model for DDP, ``report(metrics, weights_dir|None)`` reports;
    ``init_from``: a model directory whose weights the model starts from; rank 0 writes the step it reached to
    ``steps_file`` (for the driver's progress bar) about 50 times per run."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng([cfg.seed, rank])
    core = SmallModel(torch.from_numpy(b.vectors), mcfg)
    if init_from:  # fine-tuning (distillation): start from an earlier model's weights
        load_into(core, Path(init_from) / WEIGHTS)
    model = wrap(core) if wrap else core.to(device)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    train = b.where("train")
    train = train[rank::world] if len(train) >= world else train
    tasks = {int(t): train[b.task[train] == t] for t in np.unique(b.task[train])}
    tasks = {t: i for t, i in tasks.items() if len(i)}
    target = b.where("target")
    target = target[rank::world] if len(target) >= world else target
    half = cfg.batch_size // 2
    best, t0 = -np.inf, time.perf_counter()
    every = max(1, cfg.steps // 50)
    for step in range(1, cfg.steps + 1):
        if steps_file and rank == 0 and (step % every == 0 or step == cfg.steps):
            _write_step(Path(steps_file), step)
        if cfg.objective == "source_only" or len(tasks) < 2:
            out = supervised_step(model, opt, make_batch(b.seqs, b.label, balanced(rng, train, b.label, cfg.batch_size),
                                                         device))
        else:
            s, q = rng.choice(sorted(tasks), size=2, replace=False)
            support = make_batch(b.seqs, b.label, balanced(rng, tasks[int(s)], b.label, half), device)
            query = make_batch(b.seqs, b.label, balanced(rng, tasks[int(q)], b.label, half), device)
            tgt = None
            if cfg.objective == "meta_align" and len(target):
                tgt = make_batch(b.seqs, b.label, rng.choice(target, size=half, replace=True), device).x
            out = meta_step(model, opt, support, query, cfg.inner_lr, cfg.query_weight, tgt, cfg.align_weight,
                            align_lambda(step / cfg.steps))
        if step % cfg.eval_every == 0 or step == cfg.steps:
            metrics = {"step": step, "seconds": time.perf_counter() - t0, **out}
            weights = None
            if rank == 0:
                metrics.update(_val_score(core, b, device))
                if cfg.select == "last":  # fine-tuning on pseudo-labels: the sources' val split would undo it
                    metrics["val_score"] = float(step)
                if metrics["val_score"] > best:
                    best = metrics["val_score"]
                    weights = Path(tempfile.mkdtemp(prefix="fusionlog-ckpt-"))
                    save(core, weights / WEIGHTS)
            if report:
                report(metrics, weights)


def _write_step(path: Path, step: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(str(step))
        tmp.replace(path)
    except OSError:  # the progress bar is a courtesy: never fail training for it
        pass


def train_loop_per_worker(config: dict) -> None:
    """Entry point of each Ray Train worker."""
    import shutil

    import ray
    import ray.train
    import ray.train.torch

    cfg, mcfg = TrainConfig(**config["train"]), ModelConfig(**config["model"])
    torch.set_num_threads(cfg.threads_per_worker)
    bundle: Bundle = ray.get(config["bundle"])
    ctx = ray.train.get_context()

    def wrap(model: torch.nn.Module) -> torch.nn.Module:
        return ray.train.torch.prepare_model(model, parallel_strategy_kwargs={"find_unused_parameters": True})

    def report(metrics: dict, weights: Path | None) -> None:
        ckpt = ray.train.Checkpoint.from_directory(str(weights)) if weights else None
        ray.train.report(metrics, checkpoint=ckpt)
        if weights:
            shutil.rmtree(weights, ignore_errors=True)

    run_training(bundle, cfg, mcfg, ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device(),
                 wrap, report, config.get("init_from"), config.get("steps_file"))

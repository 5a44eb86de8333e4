"""``fusionlog run``: ingest -> embed -> route -> train -> distill -> detect -> evaluate -> report.

Each stage is a function of (run, experiment) that writes its outputs atomically, then a marker
``<run>/stages/<stage>.json`` with the hash of its inputs and config (chained through the previous stage's
hash). A stage whose marker holds the same hash is skipped; ``from_stage`` re-runs from a stage on. A run
killed in the middle of a stage has no marker for it, so the next run re-does that stage from its start
(the models, LLM verdicts and tables already written are reused where their own keys match).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fusionlog.config import ExperimentConfig, LLMConfig, load_embed, load_ingest, load_llm
from fusionlog.console import Reporter
from fusionlog.io import atomic_dir, atomic_write_text, clean_temp
from fusionlog.train.stage import config_hash

STAGES = ("ingest", "embed", "route", "train", "distill", "detect", "evaluate", "report")
LLM_MODES = ("fusionlog", "generallog", "llm-only")
VERDICTS = pa.schema([("window_id", pa.string()), ("label", pa.string()), ("confidence", pa.float32()),
                      ("reason", pa.string()), ("purpose", pa.string())])


@dataclass
class Ctx:
    run: Path
    exp: ExperimentConfig
    llm: LLMConfig
    say: Callable[[str], None]
    summaries: dict[str, dict] = field(default_factory=dict)
    reporter: Reporter = field(default_factory=Reporter)  # progress bars of long stages

    @property
    def modes(self) -> list[str]:
        return list(dict.fromkeys([self.exp.run.mode, *self.exp.run.compare]))

    @property
    def seed(self) -> int:
        return self.exp.run.seed


def _stat(path: str) -> list:
    """What identifies an input: its path, and size + mtime for local files (directories: their files)."""
    from fusionlog.experiment import resolve

    p = Path(resolve(path.split(":")[0] if ":" in path and "://" not in path else path))
    if p.is_file():
        st = p.stat()
        return [str(p), st.st_size, st.st_mtime_ns]
    if p.is_dir():
        return [str(p), sorted([f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in p.rglob("*") if f.is_file())]
    return [path]


def _stage_inputs(ctx: Ctx, stage: str) -> object:
    """The configuration (and for ingest, the input files) a stage's outputs depend on."""
    exp = ctx.exp
    if stage == "ingest":
        files = [_stat(x) for spec in exp.datasets.values()
                 for x in [*spec.inputs, *spec.labels, *([spec.templates] if spec.templates else []), *spec.sequences]]
        return [exp.datasets, files, load_ingest()]
    if stage == "embed":
        return load_embed()
    if stage == "route":
        return [exp.sources, exp.target, exp.route.model_dump(exclude={"resource_wait_s"})]
    if stage == "train":
        return [exp.train, exp.model, ctx.seed, "no-router" in ctx.modes]
    if stage == "distill":
        llm = ctx.llm.model_dump(exclude={"timeout_s", "retries", "backoff_s", "concurrency", "abstain_warn_rate"})
        llm["serve"] = {k: v for k, v in llm["serve"].items() if k in ("model_path", "model_id", "max_model_len")}
        return [exp.distill, [m for m in ctx.modes if m in LLM_MODES], llm if set(ctx.modes) & set(LLM_MODES) else None]
    if stage == "detect":
        return [ctx.modes, exp.run.mode, exp.distill.threshold]
    if stage == "evaluate":
        return exp.evaluate.threshold
    return exp.run.top_windows


class Stages:
    """Markers of finished stages under ``<run>/stages/``."""

    def __init__(self, run: Path) -> None:
        self.dir = Path(run) / "stages"

    def done(self, stage: str, key: str) -> dict | None:
        p = self.dir / f"{stage}.json"
        if not p.exists():
            return None
        meta = json.loads(p.read_text())
        return meta if meta.get("hash") == key else None

    def mark(self, stage: str, key: str, summary: dict, seconds: float) -> None:
        atomic_write_text(self.dir / f"{stage}.json",
                          json.dumps({"stage": stage, "hash": key, "seconds": seconds, "summary": summary}, indent=2,
                                     default=str))

    def forget(self, stages: list[str]) -> None:
        for s in stages:
            (self.dir / f"{s}.json").unlink(missing_ok=True)


def run_experiment(exp: ExperimentConfig, run: Path, from_stage: str | None = None, until: str | None = None,
                   progress: Callable[[str], None] | None = None, reporter: Reporter | None = None,
                   ) -> dict[str, dict]:
    """Run (or resume) every stage of ``exp`` in ``run``; returns each stage's summary. ``progress`` gets the
    stage lines, ``reporter`` draws the progress bars of long stages (LLM labeling, training)."""
    if from_stage is not None and from_stage not in STAGES:
        raise ValueError(f"unknown stage {from_stage!r}: one of {', '.join(STAGES)}")
    run = Path(run).resolve()
    run.mkdir(parents=True, exist_ok=True)
    clean_temp(run)
    ctx = Ctx(run, exp, load_llm(overrides=exp.llm), progress or (lambda _m: None), reporter=reporter or Reporter())
    atomic_write_text(run / "experiment.json", exp.model_dump_json(indent=2))
    markers = Stages(run)
    if from_stage:
        markers.forget(list(STAGES[STAGES.index(from_stage):]))
    prev = ""
    for stage in STAGES:
        key = config_hash(stage, _stage_inputs(ctx, stage), prev)
        done = markers.done(stage, key)
        if done is not None:
            ctx.summaries[stage] = done["summary"]
            ctx.say(f"[{stage}] up to date (skipped)")
        else:
            ctx.say(f"[{stage}] running")
            t0 = time.perf_counter()
            summary = STAGE_FUNCS[stage](ctx)
            markers.mark(stage, key, summary, time.perf_counter() - t0)
            ctx.summaries[stage] = summary
            ctx.say(f"[{stage}] done in {time.perf_counter() - t0:.1f} s")
        prev = key
        if stage == until:
            break
    return ctx.summaries


# ---- the stages -------------------------------------------------------------------------------------------------


def _ingest(ctx: Ctx) -> dict:
    from fusionlog.experiment import ingest_dataset

    return {name: ingest_dataset(name, spec, ctx.run, ctx.reporter.bar) for name, spec in ctx.exp.datasets.items()}


def _embed(ctx: Ctx) -> dict:
    from fusionlog.embed.stage import embed

    return {"encoded": embed(ctx.run, load_embed()).encoded}


def _route(ctx: Ctx) -> dict:
    from dataclasses import asdict

    from fusionlog.route.stage import route

    return asdict(route(ctx.run, ctx.exp.sources, ctx.exp.target, ctx.exp.route, sweep=True))


def _train(ctx: Ctx) -> dict:
    from fusionlog.train.stage import train

    exp = ctx.exp
    cfg = exp.train.model_copy(update={"mode": "meta_align", "seed": ctx.seed})
    with ctx.reporter.bar("train general (steps)") as tick:
        out = {"general": train(ctx.run, exp.sources, exp.target, cfg, exp.model, progress=tick).model_dir}
    if "no-router" in ctx.modes:
        with ctx.reporter.bar("train no-router (steps)") as tick:
            out["no-router"] = train(ctx.run, exp.sources, exp.target, cfg, exp.model, name=f"no-router-s{ctx.seed}",
                                     align_all=True, progress=tick).model_dir
    return out


def _windows(ctx: Ctx, only_proprietary: bool) -> list:
    from fusionlog.llm.stage import windows_of

    return windows_of(ctx.run, ctx.exp.target, only_proprietary)


def _verdict_rows(verdicts: dict, purpose: str) -> dict[str, list]:
    rows: dict[str, list] = {"window_id": [], "label": [], "confidence": [], "reason": [], "purpose": []}
    for wid, v in verdicts.items():
        rows["window_id"].append(wid)
        rows["label"].append(v.label if v else None)
        rows["confidence"].append(v.confidence if v else None)
        rows["reason"].append(v.reason if v else None)
        rows["purpose"].append(purpose)
    return rows


def write_verdicts(run: Path, target: str, rows: dict[str, list]) -> None:
    """``llm_labels/system=<target>``: the LLM's verdicts (columns of :data:`VERDICTS`)."""
    with atomic_dir(run / "llm_labels" / f"system={target}") as tmp:
        tmp.mkdir()
        pq.write_table(pa.table(rows, schema=VERDICTS), tmp / "part-0.parquet")


def _distill(ctx: Ctx) -> dict:
    """The LLM's work in one service session: llm-only labels (every window), then the rounds (fusionlog),
    whose first round is also generallog's labels of the proprietary windows (the same prompts: cache hits)."""
    from fusionlog.distill.rounds import distill, labeler, source_kb
    from fusionlog.llm.cache import VerdictCache
    from fusionlog.llm.endpoint import llm_client

    exp, run, modes = ctx.exp, ctx.run, ctx.modes
    out_dir = run / "distill" / exp.target
    summary: dict = {"model_dir": ctx.summaries["train"]["general"], "rounds": [], "kept": 0}
    if not set(modes) & set(LLM_MODES):
        atomic_write_text(out_dir / "rounds.json", "[]")
        return summary
    tables = []
    warnings: list[str] = []

    def warn(msg: str | None) -> None:
        if msg:
            warnings.append(msg)
            ctx.say(f"WARNING: {msg}")

    with llm_client(ctx.llm) as client:
        ctx.say(f"LLM: {client.describe()}")
        if "llm-only" in modes:
            ws = _windows(ctx, False)
            ctx.say(f"llm-only: the LLM labels all {len(ws)} target windows")
            kb = source_kb(run, exp.sources, ctx.llm.max_window_chars)
            with ctx.reporter.bar("llm-only: LLM calls") as tick:
                v, st = labeler(client, ctx.llm, exp.target, kb, VerdictCache(run / "llm_cache.sqlite")).label(
                    ws, progress=tick)
            ctx.say(f"llm-only: {st.line()}")
            warn(st.warning(ctx.llm.abstain_warn_rate))
            tables.append(_verdict_rows(v, "llm-only"))
            summary["llm_only"] = st.summary()
        prop = _windows(ctx, True)
        if "fusionlog" in modes or "generallog" in modes:
            rounds_exp = exp if "fusionlog" in modes else exp.model_copy(
                update={"distill": exp.distill.model_copy(update={"rounds": 1, "min_new": 10**9})})
            res = distill(run, rounds_exp, client, ctx.llm, Path(summary["model_dir"]), prop, ctx.seed,
                          progress=ctx.say, reporter=ctx.reporter, warn=warn)
            tables.append(_verdict_rows(res.first_verdicts, "generallog"))
            kept_ids = sorted(res.kept)
            with atomic_dir(out_dir / "kept") as tmp:
                tmp.mkdir()
                pq.write_table(pa.table({"window_id": kept_ids, "label": pa.array([res.kept[i] for i in kept_ids],
                                                                                   pa.int8())}), tmp / "part-0.parquet")
            summary.update({"model_dir": res.model_dir if "fusionlog" in modes else summary["model_dir"],
                            "distilled_model_dir": res.model_dir, "rounds": res.rounds, "kept": len(res.kept),
                            "proprietary": len(prop), "seconds": res.seconds})
        summary["client"] = {"requests": client.stats.calls, "retries": client.stats.retries,
                             "invalid": client.stats.invalid, "abstained": client.stats.abstained,
                             "refused": client.stats.refused, "errors": client.stats.errors,
                             "unfit": client.stats.unfit}
    summary["llm_warnings"] = warnings
    write_verdicts(run, exp.target, {k: [x for t in tables for x in t[k]] for k in VERDICTS.names})
    atomic_write_text(out_dir / "rounds.json", json.dumps(summary["rounds"], indent=2))
    return summary


def _routes(run: Path, target: str) -> dict[str, str]:
    t = pq.read_table(run / "routes" / f"system={target}", columns=["window_id", "route"])
    return dict(zip(t["window_id"].to_pylist(), t["route"].to_pylist(), strict=True))


def _llm_scores(run: Path, target: str, purpose: str) -> dict[str, float | None]:
    from fusionlog.modes import verdict_score

    p = run / "llm_labels" / f"system={target}"
    if not p.is_dir():
        return {}
    t = pq.read_table(p)
    t = t.filter(pc.equal(t["purpose"], purpose))
    return {w: verdict_score(lab, c) for w, lab, c in zip(t["window_id"].to_pylist(), t["label"].to_pylist(),
                                                            t["confidence"].to_pylist(), strict=True)}


def _detect(ctx: Ctx) -> dict:
    """Scores of every mode (``modes/<mode>/scores/``) and of the run's mode (``scores/``)."""
    from fusionlog.model.score import score_system
    from fusionlog.modes import combine, write_scores

    exp, run = ctx.exp, ctx.run
    th = exp.distill.threshold
    routes = _routes(run, exp.target)
    ids = sorted(routes)

    @functools.cache  # the distilled model is the general one when no round kept a window
    def small(model_dir: str) -> dict[str, float]:
        wid, s = score_system(run, Path(model_dir), exp.target)
        return dict(zip(wid, s.tolist(), strict=True))

    general = small(ctx.summaries["train"]["general"])
    rounds = ctx.summaries["distill"].get("rounds") or []
    tables = {"general-only": combine(ids, routes, general, {}, "none", th, None)}
    for mode in ctx.modes:
        if mode == "fusionlog":
            tables[mode] = combine(ids, routes, small(ctx.summaries["distill"]["model_dir"]), {}, "none", th,
                                   len(rounds) or None)
        elif mode == "generallog":
            tables[mode] = combine(ids, routes, general, _llm_scores(run, exp.target, "generallog"), "proprietary",
                                   th, None)
        elif mode == "no-router":
            tables[mode] = combine(ids, routes, small(ctx.summaries["train"]["no-router"]), {}, "none", th, None)
        elif mode == "llm-only":
            tables[mode] = combine(ids, routes, None, _llm_scores(run, exp.target, "llm-only"), "all", th, None)
    for mode, t in tables.items():
        write_scores(run, mode, exp.target, t)
    with atomic_dir(run / "scores" / f"system={exp.target}") as tmp:
        tmp.mkdir()
        pq.write_table(tables[exp.run.mode], tmp / "part-0.parquet")
    main = tables[exp.run.mode]
    return {"mode": exp.run.mode, "windows": main.num_rows, "anomalous": int(pc.sum(main["label"]).as_py() or 0),
            "modes": sorted(tables)}


def _evaluate(ctx: Ctx) -> dict:
    """Metrics of every mode on the labeled target windows (the target's labels are read here only)."""
    from fusionlog.evaluate.run_metrics import evaluate_run

    return evaluate_run(ctx.run, ctx.exp, ctx.summaries)


def _report(ctx: Ctx) -> dict:
    from fusionlog.evaluate.run_report import build_report

    return {"report": str(build_report(ctx.run, ctx.exp, ctx.summaries))}


STAGE_FUNCS: dict[str, Callable[[Ctx], dict]] = {
    "ingest": _ingest, "embed": _embed, "route": _route, "train": _train, "distill": _distill,
    "detect": _detect, "evaluate": _evaluate, "report": _report,
}


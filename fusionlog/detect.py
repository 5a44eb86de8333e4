"""``fusionlog detect``: score new archives of a finished run's target (a later month) without retraining.

The new archives are ingested with the run's template state (template ids stay stable), their templates are
embedded next to a copy of the sources' vectors, windows are routed with the run's τ, and the run's final model
scores them (the LLM labels the proprietary ones in ``generallog`` / ``llm-only`` mode, with the run's knowledge
base: the labeled sources plus every distilled window). Writes ``scores/``, ``eval/`` (when labels are given)
and ``report/`` in ``out``.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from fusionlog.config import ExperimentConfig, load_ingest, load_llm, load_system
from fusionlog.console import Reporter
from fusionlog.io import atomic_dir, atomic_write_text
from fusionlog.methods import get
from fusionlog.rundir import (
    experiment_file,
    llm_cache_file,
    method_table_dir,
    state_file,
    table_dir,
    verdict_rows,
    write_verdicts,
)
from fusionlog.stages import EmbedOut, IngestOut, RunState


def finished(run: Path) -> tuple[ExperimentConfig, RunState]:
    """The experiment and the stages' results of a finished run; an error says what is missing."""
    from fusionlog.pipeline import Stages

    run = Path(run)
    exp_file = experiment_file(run)
    if not exp_file.exists():
        raise FileNotFoundError(f"{run} is not a `fusionlog run` directory (no {exp_file.name})")
    state, markers = RunState(), Stages(run)
    for stage in ("route", "train", "distill", "detect"):
        out = markers.done(stage)
        if out is None:
            raise FileNotFoundError(f"{run}: stage {stage} has not finished (or was written by an older version): "
                                    "run `fusionlog run` to the end first")
        setattr(state, stage, out)
    return ExperimentConfig.model_validate_json(exp_file.read_text()), state


def _copy_source_vectors(run: Path, out: Path, sources: list[str]) -> None:
    from fusionlog.embed.stage import TABLE, open_store, stored

    store = stored(run)
    rows = store.filter(pc.is_in(store["system"], value_set=pa.array(sources)))
    db = open_store(out)
    if TABLE in db.list_tables().tables:
        db.drop_table(TABLE)
    db.create_table(TABLE, rows)


def detect(run: Path, inputs: list[str], out: Path, labels: list[str] | None = None,
           progress: Callable[[str], None] | None = None, reporter: Reporter | None = None) -> RunState:
    from fusionlog.embed.stage import embed
    from fusionlog.ingest.stage import ingest
    from fusionlog.pipeline import Ctx, detect_stage, evaluate_stage, judge_stage, model_reads_llm, report_stage
    from fusionlog.route.stage import route

    say = progress or (lambda _m: None)
    run, out = Path(run).resolve(), Path(out).resolve()
    exp, done = finished(run)
    spec = exp.datasets[exp.target]
    if spec.kind != "raw":
        raise ValueError(f"{exp.target} was ingested from event sequences: detect takes raw archives of a raw target")
    system = load_system(spec.system or exp.target).model_copy(update={"name": exp.target})
    say(f"ingest {len(inputs)} input(s) as {exp.target} with the run's template state")
    state = state_file(run, exp.target)
    ing = ingest(system, inputs, out, labels=labels, window=spec.window, state_in=state if state.exists() else None,
                 cfg=load_ingest(), progress=(reporter or Reporter()).bar)
    _copy_source_vectors(run, out, exp.sources)
    for s in exp.sources:  # the sources' templates (for the template index and the report), not their windows, and
        for table in ("templates", "interpretations"):  # their interpretations where the run has them (embed.text)
            src = table_dir(run, table, s)
            if table == "templates" or src.is_dir():
                with atomic_dir(table_dir(out, table, s)) as tmp:
                    shutil.copytree(src, tmp)
    kept = method_table_dir(run, exp.run.mode, "combiner_train")  # the learned fusion refits on its sources' set
    if kept.is_dir():
        with atomic_dir(method_table_dir(out, exp.run.mode, kept.name)) as tmp:
            shutil.copytree(kept, tmp)
    from fusionlog.events import write_events

    write_events(out, exp.target, dict(system.levels))  # the severity baseline reads the new archives' events
    mode = exp.run.mode
    scored = exp.model_copy(update={"run": exp.run.model_copy(update={"compare": [mode]})})  # the run's method only
    state = RunState(ingest=IngestOut({exp.target: f"{ing.windows} windows, {ing.lines} lines, "
                                                   f"{ing.quarantined} quarantined"}),
                     train=done.train, distill=dataclasses.replace(done.distill, rounds=[]))
    ctx = Ctx(out, scored, load_llm(overrides=exp.llm), say, state, reporter=reporter or Reporter())
    judged = get(mode).needs.judge or model_reads_llm(exp, [get(mode)])
    interpreted = ctx.embed.text == "interpretation" or (judged and bool(ctx.llm.event_interpret_prompt))
    if judged or interpreted:
        # the LLM interprets and judges the new archives' events (those it saw before: cache hits), before the
        # embedding, which may read the interpretations
        try:
            state.judge = judge_stage(ctx, run, judged=[exp.target] if judged else [],
                                      interpreted=[exp.target] if interpreted else [])
        finally:
            ctx.close_llm()
    state.embed = EmbedOut(embed(out, ctx.embed).encoded)
    tau = float(done.route.tau)
    state.route = route(out, exp.sources, exp.target, exp.route.model_copy(update={"tau": tau, "tau_quantile": None}))
    say(f"routed with the run's tau {tau:.3f}: {state.route.general} general / {state.route.proprietary} proprietary")
    purposes = get(mode).needs.llm
    if purposes and not get(mode).needs.distill:  # the LLM labels the new windows (fusionlog: the distilled model)
        _llm_labels(ctx, run, purposes[0])
    state.detect = detect_stage(ctx)
    state.evaluate = evaluate_stage(ctx)
    state.report = report_stage(ctx)
    atomic_write_text(experiment_file(out), exp.model_dump_json(indent=2))
    return state


def _llm_labels(ctx, run: Path, mode: str) -> None:  # noqa: ANN001
    """The LLM labels the new windows (proprietary ones, or all for llm-only) with the run's knowledge base."""
    from fusionlog.distill.rounds import labeler
    from fusionlog.llm.cache import VerdictCache
    from fusionlog.llm.endpoint import llm_client
    from fusionlog.llm.knowledge import TABLE, KnowledgeBase
    from fusionlog.llm.stage import windows_of

    kb = KnowledgeBase(ctx.run)
    src = KnowledgeBase(run)
    if TABLE in src.db.list_tables().tables:
        kb.reset()
        kb.db.create_table(TABLE, src.db.open_table(TABLE).to_arrow())
    ws = windows_of(ctx.run, ctx.exp.target, only_proprietary=mode == "generallog")
    with llm_client(ctx.llm) as client, ctx.reporter.bar("LLM calls") as tick:
        verdicts, st = labeler(client, ctx.llm, ctx.exp.target, kb, VerdictCache(llm_cache_file(run))).label(
            ws, progress=tick)
    ctx.say(f"LLM: {st.line()}")
    if (msg := st.warning(ctx.llm.abstain_warn_rate)) is not None:
        ctx.say(f"WARNING: {msg}")
    write_verdicts(ctx.run, ctx.exp.target, verdict_rows(verdicts, mode))

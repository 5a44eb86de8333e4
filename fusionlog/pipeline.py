"""``fusionlog run``: ingest -> events -> judge -> embed -> route -> train -> distill -> detect -> evaluate -> report.

The LLM's two stages (judge: one question per event, and the events' interpretations where asked, before embed
since the embedding may read the interpretations and before train since the small model reads the event scores;
distill: window labels and rounds) share one LLM service session (:meth:`Ctx.client`: started by the first that
needs it; stopped after judge when no chosen method asks the LLM about windows, else after distill: training runs
beside the idle replica).

Each stage is a function of (run, experiment) that writes its outputs atomically, then a marker
``<run>/stages/<stage>.json`` with the hash of its inputs and config (chained through the previous stage's
hash). A stage whose marker holds the same hash is skipped; ``from_stage`` re-runs from a stage on. A run
killed in the middle of a stage has no marker for it, so the next run re-does that stage from its start
(the models, LLM verdicts and tables already written are reused where their own keys match).
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fusionlog.config import EmbedConfig, ExperimentConfig, LLMConfig, load_embed, load_ingest, load_llm
from fusionlog.console import Reporter
from fusionlog.io import atomic_dir, atomic_write_text, clean_temp, config_hash
from fusionlog.llm.client import ChatClient
from fusionlog.methods import Artifacts, Method, chosen, get
from fusionlog.ray_runtime import own_local_ray
from fusionlog.rundir import (
    VERDICTS,
    distill_kept_dir,
    distill_rounds_file,
    experiment_file,
    llm_cache_file,
    method_notes_file,
    method_table_dir,
    read_verdicts,
    stage_marker,
    table_dir,
    verdict_rows,
    views_kept_dir,
    views_rounds_file,
    write_verdicts,
)
from fusionlog.stages import (
    DetectOut,
    DistillOut,
    EmbedOut,
    EvaluateOut,
    EventsOut,
    IngestOut,
    JudgeOut,
    ReportOut,
    RunState,
    TrainOut,
    from_json,
    to_json,
)

STAGES = ("ingest", "events", "judge", "embed", "route", "train", "distill", "detect", "evaluate", "report")


@dataclass
class Ctx:
    run: Path
    exp: ExperimentConfig
    llm: LLMConfig
    say: Callable[[str], None]
    state: RunState = field(default_factory=RunState)  # the stages' typed results so far
    reporter: Reporter = field(default_factory=Reporter)  # progress bars of long stages

    _llm: contextlib.ExitStack | None = None
    _client: ChatClient | None = None

    def __post_init__(self) -> None:
        self.interpreted()  # a setting that cannot work fails now, not after ingest

    def client(self) -> ChatClient:
        """The LLM client; the first call starts the service (the serve backend), :meth:`close_llm` stops it."""
        if self._client is None:
            from fusionlog.llm.endpoint import llm_client

            stack = contextlib.ExitStack()
            self._client = stack.enter_context(llm_client(self.llm))
            self._llm = stack
        return self._client

    def close_llm(self) -> None:
        if self._llm is not None:
            self._llm.close()
        self._llm, self._client = None, None

    @property
    def methods(self) -> list[Method]:
        """The chosen methods, then every registered baseline."""
        return chosen(self.exp.run.mode, self.exp.run.compare)

    def need_models(self) -> set[str]:
        return {m for x in self.methods for m in x.needs.models}

    def need_llm(self) -> set[str]:
        return {p for x in self.methods for p in x.needs.llm}

    def need_distill(self) -> bool:
        return any(x.needs.distill for x in self.methods)

    @functools.cached_property
    def embed(self) -> EmbedConfig:
        """``conf/embed.yaml`` with the experiment's ``embed:`` overrides (read once per run)."""
        return load_embed(overrides=self.exp.embed)

    def need_judge(self) -> bool:
        return bool(self.judged() or self.interpreted())

    def judged_sources(self) -> list[str]:
        """The sources whose events the LLM judges too: the small model's ``llm`` event feature needs them, and a
        method that reads the label-free views on the sources (:attr:`Needs.source_views`)."""
        viewed = self.viewed_sources()
        return list(self.exp.sources) if model_reads_llm(self.exp, self.methods) else viewed

    def viewed_sources(self) -> list[str]:
        """The sources whose label-free views a chosen method reads (:meth:`Method.source_systems`)."""
        wanted = {s for x in self.methods for s in x.source_systems(self.exp)}
        return [s for s in self.exp.sources if s in wanted]

    def triaged(self) -> list[str]:
        """The systems whose failure events the LLM triages (``llm.event_triage_prompt``): the target, and the
        sources whose views a method reads (the views must be computed there exactly as on the target)."""
        if not self.llm.event_triage_prompt or not self.judged():
            return []
        return [self.exp.target, *self.viewed_sources()]

    def judged(self) -> list[str]:
        """The systems whose events the LLM judges: the target when a method reads the event scores, and
        :meth:`judged_sources`."""
        sources = self.judged_sources()
        return [self.exp.target, *sources] if sources or any(x.needs.judge for x in self.methods) else []

    def interpreted(self) -> list[str]:
        """The systems whose events the LLM interprets (LEI): every one when the embedding reads the
        interpretations, else the judged ones when the event question reads them (``llm.event_interpret_prompt``)."""
        if self.embed.text == "interpretation":
            if not self.llm.event_interpret_prompt:
                raise ValueError("embed.text is 'interpretation': set llm.event_interpret_prompt (e.g. "
                                 "event_interpret_v1) so that the judge stage writes the interpretations")
            return [self.exp.target, *self.exp.sources]
        return self.judged() if self.llm.event_interpret_prompt else []

    def need_views(self) -> bool:
        return any(x.needs.views for x in self.methods)

    @property
    def seed(self) -> int:
        return self.exp.run.seed


def model_reads_llm(exp: ExperimentConfig, methods: list[Method]) -> bool:
    """Whether a small model of ``methods`` reads the LLM's event scores (``llm`` in ``model.event_features``): the
    events of the target and the sources must then be judged."""
    return any(m.needs.models for m in methods) and "llm" in exp.model.event_features


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
        return [exp.datasets, files, load_ingest(), "windows-v2"]  # v2: each line's level in windows/
    if stage == "events":
        from fusionlog.events import DEFAULT_LEVELS
        from fusionlog.experiment import levels_maps

        return [levels_maps(exp), DEFAULT_LEVELS, "events-v1"]
    if stage == "judge":
        if not ctx.need_judge():
            return None
        llm = ctx.llm.model_dump(include={"backend", "base_url", "model", "event_prompt"})
        from fusionlog.llm.prompt import load_prompt

        llm["event_prompt"] = load_prompt(ctx.llm.event_prompt).version  # name@content-hash: an edit re-runs
        for opt in ("event_counter_prompt", "event_interpret_prompt", "event_triage_prompt"):  # (absent when unset:
            if getattr(ctx.llm, opt):                                    # earlier runs' judge stays up to date)
                llm[opt] = load_prompt(getattr(ctx.llm, opt)).version
        if ctx.llm.event_triage_prompt:
            llm["triage_orders"] = ctx.llm.triage_orders
            if ctx.triaged() != [exp.target]:  # (absent when only the target is: earlier runs' judge stays up to date)
                llm["triaged"] = ctx.triaged()
        return [llm, {k: v for k, v in ctx.llm.serve.model_dump().items() if k in ("model_path", "model_id")},
                ctx.judged_sources(), *([{"judged": ctx.judged(), "interpreted": ctx.interpreted()}]
                                        if ctx.interpreted() else []), "judge-v3"]  # v3: monotone mixture
    if stage == "embed":
        return ctx.embed
    if stage == "route":
        return [exp.sources, exp.target, exp.route.model_dump(exclude={"resource_wait_s"})]
    if stage == "train":
        return [exp.train, exp.model, ctx.seed, "no-router" in ctx.need_models()]
    if stage == "distill":
        llm = ctx.llm.model_dump(exclude={"timeout_s", "retries", "backoff_s", "concurrency", "abstain_warn_rate"})
        llm["serve"] = {k: v for k, v in llm["serve"].items() if k in ("model_path", "model_id", "max_model_len")}
        uses = [m.name for m in ctx.methods if m.needs.llm or m.needs.distill]
        views = get("fusionlog-vote").hash_inputs(exp) if ctx.need_views() else None  # what the views' decision reads
        # v3: with one voting view, its own decision gives the candidates; v4: broken count relations are candidates
        return [exp.distill, exp.run.threshold, uses, llm if uses else None, views, "views-distill-v4"]
    if stage == "detect":
        return [[m.name for m in ctx.methods], exp.run.mode, exp.run.threshold,
                {m.name: m.hash_inputs(exp) for m in ctx.methods}]
    if stage == "evaluate":
        return exp.run.threshold
    return exp.run.top_windows


class Stages:
    """Markers of finished stages under ``<run>/stages/``."""

    def __init__(self, run: Path) -> None:
        self.run = Path(run)

    def done(self, stage: str, key: str | None = None) -> object | None:
        """The stage's typed result when its marker holds ``key`` (any key: None), else None."""
        p = stage_marker(self.run, stage)
        if not p.exists():
            return None
        meta = json.loads(p.read_text())
        return from_json(stage, meta.get("summary")) if key is None or meta.get("hash") == key else None

    def mark(self, stage: str, key: str, out: object, seconds: float) -> None:
        atomic_write_text(stage_marker(self.run, stage),
                          json.dumps({"stage": stage, "hash": key, "seconds": seconds, "summary": to_json(out)},
                                     indent=2, default=str))

    def forget(self, stages: list[str]) -> None:
        for s in stages:
            stage_marker(self.run, s).unlink(missing_ok=True)


def run_experiment(exp: ExperimentConfig, run: Path, from_stage: str | None = None, until: str | None = None,
                   progress: Callable[[str], None] | None = None, reporter: Reporter | None = None,
                   ) -> RunState:
    """Run (or resume) every stage of ``exp`` in ``run``; returns the stages' typed results. ``progress`` gets the
    stage lines, ``reporter`` draws the progress bars of long stages (LLM labeling, training)."""
    if from_stage is not None and from_stage not in STAGES:
        raise ValueError(f"unknown stage {from_stage!r}: one of {', '.join(STAGES)}")
    run = Path(run).resolve()
    run.mkdir(parents=True, exist_ok=True)
    clean_temp(run)
    ctx = Ctx(run, exp, load_llm(overrides=exp.llm), progress or (lambda _m: None), reporter=reporter or Reporter())
    atomic_write_text(experiment_file(run), exp.model_dump_json(indent=2))
    markers = Stages(run)
    if from_stage:
        markers.forget(list(STAGES[STAGES.index(from_stage):]))
    prev = ""
    with own_local_ray(), contextlib.ExitStack() as stack:
        stack.callback(ctx.close_llm)
        for stage in STAGES:
            key = config_hash(stage, _stage_inputs(ctx, stage), prev)
            done = markers.done(stage, key)
            if done is not None:
                setattr(ctx.state, stage, done)
                ctx.say(f"[{stage}] up to date (skipped)")
            else:
                ctx.say(f"[{stage}] running")
                t0 = time.perf_counter()
                out = STAGE_FUNCS[stage](ctx)
                markers.mark(stage, key, out, time.perf_counter() - t0)
                setattr(ctx.state, stage, out)
                ctx.state.ran.append(stage)
                ctx.say(f"[{stage}] done in {time.perf_counter() - t0:.1f} s")
            prev = key
            if stage == "distill" or (stage == "judge" and not ctx.need_llm()):
                ctx.close_llm()  # no later stage asks the LLM: its CPUs and memory go back
            if stage == until:
                break
    return ctx.state


# ---- the stages -------------------------------------------------------------------------------------------------


def _ingest(ctx: Ctx) -> IngestOut:
    from fusionlog.experiment import ingest_dataset

    return IngestOut({name: ingest_dataset(name, spec, ctx.run, ctx.reporter.bar, ctx.say)
                      for name, spec in ctx.exp.datasets.items()})


def _events(ctx: Ctx) -> EventsOut:
    from fusionlog.events import write_events
    from fusionlog.experiment import levels_maps

    return EventsOut({name: write_events(ctx.run, name, levels) for name, levels in levels_maps(ctx.exp).items()})


def _judge(ctx: Ctx) -> JudgeOut:
    """The LLM's judgment of every target event (``event_scores/``) when a chosen method needs it, and of the
    sources' events when the small model reads them (``model.event_features``); the interpretations first
    (:meth:`Ctx.interpreted`)."""
    return judge_stage(ctx, judged=ctx.judged(), interpreted=ctx.interpreted()) if ctx.need_judge() else JudgeOut()


def judge_stage(ctx: Ctx, cache_run: Path | None = None, judged: list[str] | None = None,
                interpreted: list[str] | None = None) -> JudgeOut:
    """Interpret the events of ``interpreted`` (``interpretations/``), then judge those of ``judged`` (default: the
    target) in ``ctx.run``, with the LLM cache of ``cache_run`` (default: ``ctx.run``; detect passes the finished
    run's, so events it judged before are cache hits). The service starts only if the cache lacks an answer, and
    stays up (:meth:`Ctx.client`) until the caller closes it. Each system is calibrated on its own events; the
    question reads the interpretations where ``llm.event_interpret_prompt`` is set. The target's events in the
    question's upper group are then triaged (``event_triage/``, :mod:`fusionlog.llm.triage`) where
    ``llm.event_triage_prompt`` is set."""
    import dataclasses

    from fusionlog.llm.cache import ProbabilityCache
    from fusionlog.llm.endpoint import model_name
    from fusionlog.llm.interpret import interpret, write_interpretations
    from fusionlog.llm.judge import events_of, judge, write_event_scores
    from fusionlog.llm.triage import TRIAGE, triage, write_triage

    target = ctx.exp.target
    judged = [target] if judged is None else judged
    triage_of = set(ctx.triaged()) & set(judged)
    cache = ProbabilityCache(llm_cache_file(cache_run or ctx.run))
    stats, warnings, texts, calls, tri_stats = {}, [], {}, {}, {}
    prompt = ctx.llm.event_interpret_prompt
    if interpreted and not prompt:
        raise ValueError(f"judge: interpretations of {', '.join(interpreted)} asked for, but "
                         "llm.event_interpret_prompt is not set")
    try:
        for system in interpreted or []:
            with ctx.reporter.bar(f"judge: LLM interpretations of {system}'s events") as tick:
                table, ist = interpret(ctx.client, system, events_of(ctx.run, system), str(prompt), cache,
                                       ctx.llm.concurrency, tick, model=model_name(ctx.llm))
            write_interpretations(ctx.run, system, table)
            ctx.say(f"judge {system}: {ist.line()}")
            texts[system] = dict(zip(table["template_id"].to_pylist(), table["interpretation"].to_pylist(),
                                     strict=True))
            calls[system] = ist.asked
        for system in judged:
            events = events_of(ctx.run, system)
            if ctx.llm.event_interpret_prompt and system in texts:
                events = [dataclasses.replace(ev, interpretation=texts[system][ev.template_id]) for ev in events]
            with ctx.reporter.bar(f"judge: LLM questions on {system}'s events") as tick:
                table, st = judge(ctx.client, system, events, ctx.llm.event_prompt, cache,
                                  ctx.llm.concurrency, tick, model=model_name(ctx.llm),
                                  counter=ctx.llm.event_counter_prompt)
            write_event_scores(ctx.run, system, table)
            ctx.say(f"judge {system}: {st.line()}")
            warnings += [f"{system}: {w}" for w in [st.warning()] if w]
            stats[system] = st
            if system in triage_of and ctx.llm.event_triage_prompt:
                failures = {t for t, v in zip(table["template_id"].to_pylist(), table["score"].to_pylist(),
                                              strict=True) if v is not None and v >= 0.5}
                with ctx.reporter.bar(f"judge: LLM triage of {system}'s failure events") as tick:
                    tri, tst = triage(ctx.client, system, [e for e in events if e.template_id in failures],
                                      ctx.llm.event_triage_prompt, cache, ctx.llm.concurrency, tick,
                                      model=model_name(ctx.llm), orders=ctx.llm.triage_orders)
                write_triage(ctx.run, system, tri)
                ctx.say(f"judge {system}: triage: {tst.line()}")
                warnings += [f"{system}: the LLM abstained on {tst.abstained} of {tst.events} triage questions' "
                             "events: their failures are kept"] if tst.abstained else []
                tri_stats[system] = tst
            else:  # no triage of this system: an earlier run's must not linger
                write_triage(ctx.run, system, TRIAGE.empty_table())
    finally:
        cache.close()
    for w in warnings:
        ctx.say(f"WARNING: {w}")
    others = {s: {"events": x.events, "asked": x.asked, "cache_hits": x.cache_hits, "abstained": x.abstained,
                  "calibration": x.calibration, "seconds": round(x.seconds, 1), "interpreted": calls.get(s, 0),
                  **({"triaged": tri_stats[s].events, "triage_asked": tri_stats[s].asked,
                      "triage_users": tri_stats[s].users} if s in tri_stats else {})}
              for s, x in stats.items() if s != target}
    triaged = tri_stats.get(target)
    others.update({s: {"interpreted": n} for s, n in calls.items() if s != target and s not in stats})
    if target not in stats:
        return JudgeOut(sources=others, interpreted=calls.get(target, 0))
    st = stats[target]
    return JudgeOut(target, st.events, st.asked, st.cache_hits, st.abstained, st.no_logprobs, st.p_cf,
                    st.calibration, st.seconds, warnings, others, calls.get(target, 0), st.distinct, st.undecided,
                    triaged.events if triaged else 0, triaged.asked if triaged else 0,
                    triaged.users if triaged else 0)


def _embed(ctx: Ctx) -> EmbedOut:
    from fusionlog.embed.stage import embed

    return EmbedOut(embed(ctx.run, ctx.embed).encoded)


def _route(ctx: Ctx):  # noqa: ANN202 (fusionlog.stages.RouteOut)
    from fusionlog.route.stage import route

    return route(ctx.run, ctx.exp.sources, ctx.exp.target, ctx.exp.route, sweep=True)


def _train(ctx: Ctx) -> TrainOut:
    from fusionlog.train.stage import train

    exp = ctx.exp
    cfg = exp.train.model_copy(update={"objective": "meta_align", "seed": ctx.seed})
    with ctx.reporter.bar("train general (steps)") as tick:
        out = TrainOut(train(ctx.run, exp.sources, exp.target, cfg, exp.model, progress=tick).model_dir)
    if "no-router" in ctx.need_models():
        with ctx.reporter.bar("train no-router (steps)") as tick:
            out.no_router = train(ctx.run, exp.sources, exp.target, cfg, exp.model, name=f"no-router-s{ctx.seed}",
                                  align_all=True, progress=tick).model_dir
    return out


def _windows(ctx: Ctx, only_proprietary: bool) -> list:
    from fusionlog.llm.stage import windows_of

    return windows_of(ctx.run, ctx.exp.target, only_proprietary)


CLIENT_COUNTS = {"requests": "calls", "retries": "retries", "invalid": "invalid", "abstained": "abstained",
                 "refused": "refused", "errors": "errors", "unfit": "unfit"}  # DistillOut.client key -> CallStats


def _distill(ctx: Ctx) -> DistillOut:
    """The LLM's work in one service session: llm-only labels (every window), then the rounds (fusionlog),
    whose first round is also generallog's labels of the proprietary windows (the same prompts: cache hits)."""
    from fusionlog.distill.rounds import distill, labeler
    from fusionlog.llm.cache import VerdictCache
    from fusionlog.llm.knowledge import source_kb

    exp, run = ctx.exp, ctx.run
    purposes, rounds_run = ctx.need_llm(), ctx.need_distill()
    assert ctx.state.train is not None
    out = DistillOut(ctx.state.train.general)
    if ctx.need_views():
        _distill_views(ctx, out)
    if not purposes and not rounds_run:
        atomic_write_text(distill_rounds_file(run, exp.target), "[]")
        return out
    tables = []
    warnings: list[str] = []

    def warn(msg: str | None) -> None:
        if msg:
            warnings.append(msg)
            ctx.say(f"WARNING: {msg}")

    with contextlib.nullcontext(ctx.client()) as client:  # the judge stage's session, if it ran
        before = {k: getattr(client.stats, k) for k in CLIENT_COUNTS.values()}
        ctx.say(f"LLM: {client.describe()}")
        if "llm-only" in purposes:
            ws = _windows(ctx, False)
            ctx.say(f"llm-only: the LLM labels all {len(ws)} target windows")
            kb = source_kb(run, exp.sources, ctx.llm.max_window_chars)
            with ctx.reporter.bar("llm-only: LLM calls") as tick:
                v, st = labeler(client, ctx.llm, exp.target, kb, VerdictCache(llm_cache_file(run))).label(
                    ws, progress=tick)
            ctx.say(f"llm-only: {st.line()}")
            warn(st.warning(ctx.llm.abstain_warn_rate))
            tables.append(verdict_rows(v, "llm-only"))
            out.llm_only = st.summary()
        prop = _windows(ctx, True)
        if rounds_run or "generallog" in purposes:
            rounds_exp = exp if rounds_run else exp.model_copy(
                update={"distill": exp.distill.model_copy(update={"rounds": 1, "min_new": 10**9})})
            res = distill(run, rounds_exp, client, ctx.llm, Path(out.model_dir), prop, ctx.seed,
                          progress=ctx.say, reporter=ctx.reporter, warn=warn)
            tables.append(verdict_rows(res.first_verdicts, "generallog"))
            kept_ids = sorted(res.kept)
            with atomic_dir(distill_kept_dir(run, exp.target)) as tmp:
                tmp.mkdir()
                pq.write_table(pa.table({"window_id": kept_ids, "label": pa.array([res.kept[i] for i in kept_ids],
                                                                                   pa.int8())}), tmp / "part-0.parquet")
            out.model_dir = res.model_dir if rounds_run else out.model_dir
            out.distilled_model_dir, out.rounds, out.kept = res.model_dir, res.rounds, len(res.kept)
            out.proprietary, out.seconds = len(prop), res.seconds
        out.client = {k: getattr(client.stats, a) - before[a] for k, a in CLIENT_COUNTS.items()}  # distill's own
    out.llm_warnings = warnings
    write_verdicts(run, exp.target, {k: [x for t in tables for x in t[k]] for k in VERDICTS.names})
    atomic_write_text(distill_rounds_file(run, exp.target), json.dumps(out.rounds, indent=2))
    return out


def _distill_views(ctx: Ctx, out: DistillOut) -> None:
    """The small model distilled on the windows the label-free views agree on (``fusionlog.distill.views``):
    ``views_kept/``, ``views_rounds.json`` and ``out.views_*``."""
    from fusionlog.distill.views import distill_views

    exp, run = ctx.exp, ctx.run
    assert ctx.state.train is not None
    art = _artifacts(ctx, ctx.state.train.general)
    names, d = get("fusionlog-vote").decide(art)  # type: ignore[attr-defined]
    ctx.say(f"views distill: {len(d.voting)} voting views ({', '.join(d.voting) or 'none'}) of {', '.join(names)}")
    res = distill_views(run, exp, art.ids, art.template_ids(), d.votes, len(d.voting), d.label, d.score, art.small,
                        Path(ctx.state.train.general), ctx.seed, progress=ctx.say, reporter=ctx.reporter,
                        alone=d.alone)
    ids = sorted(res.kept)
    with atomic_dir(views_kept_dir(run, exp.target)) as tmp:
        tmp.mkdir()
        pq.write_table(pa.table({"window_id": ids, "label": pa.array([res.kept[i][0] for i in ids], pa.int8()),
                                 "round": pa.array([res.kept[i][1] for i in ids], pa.int16())}),
                       tmp / "part-0.parquet")
    atomic_write_text(views_rounds_file(run, exp.target), json.dumps(res.rounds, indent=2))
    out.views_model_dir, out.views_rounds = res.model_dir, res.rounds
    out.views_kept = [sum(1 for c, _ in res.kept.values() if c == k) for k in (0, 1)]


def _artifacts(ctx: Ctx, distilled: str) -> Artifacts:
    """What the methods see of the run so far (``distilled``: the paper's distilled model directory)."""
    from fusionlog.model.score import score_system

    exp, run, train = ctx.exp, ctx.run, ctx.state.train
    assert train is not None
    routes = _routes(run, exp.target)

    @functools.cache  # the distilled model is the general one when no round kept a window
    def small(model_dir: str) -> dict[str, float]:
        wid, s = score_system(run, Path(model_dir), exp.target)
        return dict(zip(wid, s.tolist(), strict=True))

    d = ctx.state.distill
    return Artifacts(run=run, exp=exp, ids=sorted(routes), routes=routes, threshold=exp.run.threshold,
                     models={"general": train.general, "no-router": train.no_router or "", "distilled": distilled,
                             "views": (d.views_model_dir if d else None) or train.general},
                     rounds=len(d.rounds) if d else 0, small=small,
                     llm=functools.cache(lambda purpose: _llm_scores(run, exp.target, purpose)))


def _routes(run: Path, target: str) -> dict[str, str]:
    t = pq.read_table(table_dir(run, "routes", target), columns=["window_id", "route"])
    return dict(zip(t["window_id"].to_pylist(), t["route"].to_pylist(), strict=True))


def _llm_scores(run: Path, target: str, purpose: str) -> dict[str, float | None]:
    from fusionlog.modes import verdict_score

    t = read_verdicts(run, target)
    t = t.filter(pc.equal(t["purpose"], purpose))
    return {w: verdict_score(lab, c) for w, lab, c in zip(t["window_id"].to_pylist(), t["label"].to_pylist(),
                                                            t["confidence"].to_pylist(), strict=True)}


def detect_stage(ctx: Ctx) -> DetectOut:
    """Scores of every chosen method and baseline (``modes/<method>/scores/``) and of the run's mode
    (``scores/``); each registered method scores from the artifacts it declared it needs."""
    from fusionlog.modes import write_scores

    exp, run = ctx.exp, ctx.run
    assert ctx.state.train is not None and ctx.state.distill is not None
    art = _artifacts(ctx, ctx.state.distill.model_dir)
    tables = {m.name: art.scores(m.name) for m in ctx.methods}
    for mode, t in tables.items():
        write_scores(run, mode, exp.target, t)
        notes = method_notes_file(run, mode)
        if mode in art.notes:
            atomic_write_text(notes, json.dumps(art.notes[mode], indent=2, default=float))
        else:
            notes.unlink(missing_ok=True)
        for name, table in art.tables.get(mode, {}).items():
            with atomic_dir(method_table_dir(run, mode, name)) as tmp:
                tmp.mkdir()
                pq.write_table(table, tmp / "part-0.parquet")
    with atomic_dir(table_dir(run, "scores", exp.target)) as tmp:
        tmp.mkdir()
        pq.write_table(tables[exp.run.mode], tmp / "part-0.parquet")
    main = tables[exp.run.mode]
    return DetectOut(exp.run.mode, main.num_rows, int(pc.sum(main["label"]).as_py() or 0), sorted(tables))


def evaluate_stage(ctx: Ctx) -> EvaluateOut:
    """Metrics of every mode on the labeled target windows (the target's labels are read here only)."""
    from fusionlog.evaluate.run_metrics import evaluate_run

    assert ctx.state.detect is not None and ctx.state.distill is not None
    return evaluate_run(ctx.run, ctx.exp, ctx.state.detect.modes, ctx.state.distill.rounds,
                        ctx.state.distill.views_rounds)


def report_stage(ctx: Ctx) -> ReportOut:
    from fusionlog.evaluate.run_report import build_report

    return ReportOut(str(build_report(ctx.run, ctx.exp, ctx.state.summaries())))


STAGE_FUNCS: dict[str, Callable[[Ctx], object]] = {
    "ingest": _ingest, "events": _events, "judge": _judge, "embed": _embed, "route": _route, "train": _train,
    "distill": _distill,
    "detect": detect_stage, "evaluate": evaluate_stage, "report": report_stage,
}


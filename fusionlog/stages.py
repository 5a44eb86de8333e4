"""Typed results of the stages of ``fusionlog run``, persisted in the stage markers (``<run>/stages/<stage>.json``,
key ``summary``) and read back as the same dataclasses: the stages talk through these, not through dicts.

A marker whose summary does not fit its dataclass (written by an older version) counts as not done: the stage
runs again."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from fusionlog.route.stage import RouteResult as RouteOut


@dataclass
class IngestOut:
    datasets: dict[str, str]  # dataset -> one-line summary


@dataclass
class EventsOut:
    events: dict[str, int]  # system -> events (distinct templates) in events/


@dataclass
class JudgeOut:
    """The LLM's event judgment of the target (fusionlog.llm.judge.JudgeStats; empty when no method needs it), and
    per source judged for the small model's ``llm`` event feature: its counts."""

    system: str = ""
    events: int = 0
    asked: int = 0
    cache_hits: int = 0
    abstained: int = 0
    no_logprobs: int = 0
    p_cf: float = 0.5
    calibration: str = ""
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    sources: dict[str, dict] = field(default_factory=dict)
    interpreted: int = 0  # interpretations generated (LLM calls beside ``asked``; llm.event_interpret_prompt)
    distinct: int = 0  # distinct P(yes) among the target's answered events (JudgeStats.distinct)
    undecided: int = 0  # target events near the mixture's cut (JudgeStats.undecided)
    triaged: int = 0  # target events triaged (fusionlog.llm.triage: those the yes/no question calls failures)
    triage_asked: int = 0  # triage questions sent (LLM calls beside ``asked``)
    users: int = 0  # triaged events more likely a user's problem than the system's fault (below the LLM view's cut)

    def calls(self) -> int:
        """The LLM calls of the stage: questions, triage and interpretations, of the target and the sources."""
        return self.asked + self.triage_asked + self.interpreted + sum(
            x.get("asked", 0) + x.get("interpreted", 0) + x.get("triage_asked", 0) for x in self.sources.values())


@dataclass
class EmbedOut:
    encoded: int


@dataclass
class TrainOut:
    general: str  # the general-branch model (meta_align, aligned to the general target windows)
    no_router: str | None = None  # aligned to every target window (the no-router method)


@dataclass
class DistillOut:
    model_dir: str  # the distilled model (the general one when no round ran or kept a window)
    rounds: list[dict] = field(default_factory=list)  # one row per round (fusionlog.contracts.ROUND_KEYS + counts)
    kept: int = 0
    distilled_model_dir: str | None = None
    proprietary: int = 0
    seconds: float = 0.0
    llm_only: dict | None = None  # fusionlog.llm.label.LabelStats.summary() of the llm-only labels
    client: dict = field(default_factory=dict)  # the LLM client's request counts
    llm_warnings: list[str] = field(default_factory=list)
    views_model_dir: str | None = None  # the small model distilled on the agreeing views (fusionlog.distill.views)
    views_rounds: list[dict] = field(default_factory=list)
    views_kept: list[int] = field(default_factory=list)  # kept pseudo-labels per class: [normal, anomalous]

    @property
    def llm_calls(self) -> int:
        """Signatures sent to the LLM (cache misses): llm-only labels plus every round's."""
        return int((self.llm_only or {}).get("calls", 0) + sum(r.get("llm_calls", 0) for r in self.rounds))


@dataclass
class DetectOut:
    mode: str
    windows: int
    anomalous: int
    modes: list[str]  # every scored method (chosen + baselines)


@dataclass
class EvaluateOut:
    labeled: int
    f1: dict[str, float] = field(default_factory=dict)
    rounds_f1: list[float | None] = field(default_factory=list)
    anomalous: int | None = None  # anomalous labeled windows (None: a run recorded before it was kept)
    flagged: dict[str, int] = field(default_factory=dict)  # labeled windows each method flags (unlabeled: all windows)
    windows: int | None = None  # the target's windows, where none is labeled
    inside: dict | None = None  # sessions of a raw log: windows, anomalous, margin_s, F1 of those inside the slice


@dataclass
class ReportOut:
    report: str


OUTS: dict[str, type] = {"ingest": IngestOut, "events": EventsOut, "judge": JudgeOut, "embed": EmbedOut,
                         "route": RouteOut, "train": TrainOut, "distill": DistillOut, "detect": DetectOut,
                         "evaluate": EvaluateOut, "report": ReportOut}


@dataclass
class RunState:
    """The results of a run's stages so far (None: not run)."""

    ingest: IngestOut | None = None
    events: EventsOut | None = None
    judge: JudgeOut | None = None
    embed: EmbedOut | None = None
    route: RouteOut | None = None
    train: TrainOut | None = None
    distill: DistillOut | None = None
    detect: DetectOut | None = None
    evaluate: EvaluateOut | None = None
    report: ReportOut | None = None
    ran: list[str] = field(default_factory=list)  # the stages this call ran (the others: up to date, read back)

    def summaries(self) -> dict[str, dict]:
        """The finished stages' results as JSON-able dicts (what the markers hold)."""
        return {f.name: to_json(getattr(self, f.name)) for f in dataclasses.fields(self)
                if f.name in OUTS and getattr(self, f.name) is not None}


def to_json(out: Any) -> dict:
    return dataclasses.asdict(out)


def from_json(stage: str, summary: dict) -> Any | None:
    """The stage's dataclass from a marker's summary; None when it does not fit (an older marker)."""
    cls = OUTS[stage]
    names = {f.name for f in dataclasses.fields(cls)}
    if not isinstance(summary, dict) or not set(summary) <= names:
        return None
    try:
        return cls(**summary)
    except TypeError:
        return None

"""The registry of detection methods: one file per method, chosen by name from config (``run.mode``,
``run.compare``), as logai's algorithm factory.

A method declares what it needs from the run (:class:`Needs`: which small models to train, which LLM verdicts on
which windows, whether distillation runs), what it adds to the detect stage's hash, and how it scores the
target's windows from those artifacts (:meth:`Method.score` -> a ``scores`` table). ``baseline = True`` methods
are scored in every run beside the chosen ones. Adding a method is one decorated class in a new module here::

    @register("my-method")
    class MyMethod(Method):
        needs = Needs(models=("general",))
        def score(self, art: Artifacts) -> pa.Table: ...
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from fusionlog.config import ExperimentConfig

MODELS = ("general", "no-router")  # small models a method may ask for (trained by the train stage)
PURPOSES = ("llm-only", "generallog")  # LLM verdicts: every target window, or the router's proprietary ones


@dataclass(frozen=True)
class Needs:
    """What a method needs from the earlier stages."""

    models: tuple[str, ...] = ()  # small models of MODELS
    llm: tuple[str, ...] = ()  # LLM verdicts of PURPOSES
    distill: bool = False  # the distillation rounds (their verdicts on the proprietary windows are "generallog")
    judge: bool = False  # the LLM's judgment of each target event (event_scores/)
    views: bool = False  # the small model distilled on the windows the label-free views agree on
    source_views: bool = False  # the label-free views on the labeled sources too (their events judged and triaged)


@dataclass
class Artifacts:
    """What the stages produced, as a method sees it (scores are computed lazily and cached)."""

    run: Path
    exp: ExperimentConfig
    ids: list[str]  # the target's window ids, in output order
    routes: dict[str, str]  # window id -> general | proprietary
    threshold: float  # P(anomalous) >= threshold -> anomalous
    models: dict[str, str]  # general | no-router | distilled | views -> model directory
    rounds: int  # distillation rounds run (0: none)
    small: Callable[[str], dict[str, float]]  # model directory -> P(anomalous) by window id
    llm: Callable[[str], dict[str, float | None]]  # purpose -> P(anomalous) by window id (None: abstained)
    notes: dict[str, dict] = field(default_factory=dict)  # method -> what it wants kept beside its scores (JSON)
    tables: dict[str, dict[str, pa.Table]] = field(default_factory=dict)  # method -> name -> a table kept beside them
    _memo: dict[object, object] = field(default_factory=dict, repr=False)  # scores and template ids, once each

    @property
    def target(self) -> str:
        return self.exp.target

    def table(self, scores: np.ndarray, scorer: str, labels: np.ndarray | None = None,
              flagged_by: list[list[str]] | None = None, evidence: list[dict[str, float]] | None = None) -> pa.Table:
        """A ``scores`` table of every window in :attr:`ids` order: ``scores`` cut at the threshold (or
        ``labels``), the window's route, one ``scorer`` name, no distillation round; a fusion's explanation of each
        window (``flagged_by``, ``evidence``: :mod:`fusionlog.contracts`) where given."""
        from fusionlog.contracts import SCORES

        s = np.asarray(scores, np.float64)
        lab = (s >= self.threshold) if labels is None else labels
        n = len(self.ids)
        fb, ev = SCORES.field("flagged_by").type, SCORES.field("evidence").type
        return pa.table({"window_id": self.ids, "score": s, "label": np.asarray(lab, np.int8),
                         "route": [self.routes[i] for i in self.ids], "scorer": [scorer] * n,
                         "round": pa.nulls(n, pa.int16()),
                         "flagged_by": pa.nulls(n, fb) if flagged_by is None else pa.array(flagged_by, fb),
                         "evidence": pa.nulls(n, ev) if evidence is None else pa.array(
                             [list(e.items()) for e in evidence], ev)}, schema=SCORES)

    def scores(self, method: str) -> pa.Table:
        """The registered ``method``'s scores table, computed once per run (views feed several methods: the fusion,
        the distilled model's cut and their own baseline rows)."""
        if ("scores", method) not in self._memo:
            self._memo["scores", method] = get(method).score(self)
        return self._memo["scores", method]  # type: ignore[return-value]

    def cached(self, key: object, compute: Callable[[], object]) -> object:
        """``compute()``'s result, computed once per run under ``key`` (what several methods read, as the
        invariants both their baseline and the fusion use)."""
        if ("cached", key) not in self._memo:
            self._memo["cached", key] = compute()
        return self._memo["cached", key]

    def of_system(self, system: str) -> Artifacts:
        """The same run seen with another of its systems (a labeled source) as the target, for the label-free views
        a learned fusion reads on the sources exactly as on the target: that system's windows (sorted ids), no
        route (every window ``general``), no small model and no LLM verdicts (a method that asks for them there
        fails). Built once per system."""
        if system == self.target:
            return self
        if ("system", system) not in self._memo:
            from fusionlog.train.data import read_windows

            ids = sorted(read_windows(self.run, system, ["window_id"])["window_id"].to_pylist())
            others = [s for s in [*self.exp.sources, self.exp.target] if s != system]
            exp = self.exp.model_copy(update={"target": system, "sources": others})

            def unavailable(what: str) -> dict:
                raise RuntimeError(f"{system} is seen as a source here: no {what} scored its windows")

            self._memo["system", system] = Artifacts(
                run=self.run, exp=exp, ids=ids, routes=dict.fromkeys(ids, "general"), threshold=self.threshold,
                models={}, rounds=0, small=lambda _d: unavailable("small model"),
                llm=lambda _p: unavailable("LLM verdicts"))
        return self._memo["system", system]  # type: ignore[return-value]

    def template_ids(self) -> list[list[int]]:
        """Each window's template ids, in :attr:`ids` order (read once)."""
        from fusionlog.train.data import read_windows

        if "template_ids" not in self._memo:
            t = read_windows(self.run, self.target, ["window_id", "template_ids"])
            by_id = dict(zip(t["window_id"].to_pylist(), t["template_ids"].to_pylist(), strict=True))
            self._memo["template_ids"] = [by_id[i] for i in self.ids]
        return self._memo["template_ids"]  # type: ignore[return-value]


class Method:
    """A detection method; subclasses set ``name`` (by :func:`register`), ``needs`` and implement ``score``."""

    name: ClassVar[str] = ""
    needs: ClassVar[Needs] = Needs()
    baseline: ClassVar[bool] = False  # scored in every run, beside the chosen methods
    description: ClassVar[str] = ""
    cut: ClassVar[str] = "P(anomalous) >= the run's threshold"  # the label-free rule behind the 0.5 cut

    def hash_inputs(self, exp: ExperimentConfig) -> object:
        """What, beyond the artifacts, this method's scores depend on (added to the detect stage's hash)."""
        return None

    def source_systems(self, exp: ExperimentConfig) -> list[str]:
        """The sources whose label-free views it reads (:attr:`Needs.source_views`): their events are judged and
        triaged like the target's."""
        return list(exp.sources) if self.needs.source_views else []

    def score(self, art: Artifacts) -> pa.Table:  # pragma: no cover (abstract)
        raise NotImplementedError


REGISTRY: dict[str, type[Method]] = {}


def register(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: register a :class:`Method` under ``name``."""

    def deco(cls: type[Method]) -> type[Method]:
        if name in REGISTRY and REGISTRY[name] is not cls:
            raise ValueError(f"two detection methods named {name!r}: {REGISTRY[name].__module__}, {cls.__module__}")
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return deco


@functools.cache
def _load_all() -> None:
    """Import every module of this package, so that each registers its methods."""
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")


def names() -> list[str]:
    """Every registered method, sorted."""
    _load_all()
    return sorted(REGISTRY)


def get(name: str) -> Method:
    """The method registered as ``name``; an error lists the known ones."""
    _load_all()
    if name not in REGISTRY:
        raise ValueError(f"unknown detection method {name!r}: one of {', '.join(names())}")
    return REGISTRY[name]()


def baselines() -> list[str]:
    """The methods scored in every run."""
    return [n for n in names() if REGISTRY[n].baseline]


def chosen(mode: str, compare: list[str]) -> list[Method]:
    """The run's methods: its mode, the compared ones, then every baseline (each once, in that order)."""
    return [get(n) for n in dict.fromkeys([mode, *compare, *baselines()])]

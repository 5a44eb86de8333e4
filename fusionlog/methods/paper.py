"""The paper's methods and their ablations (FusionLog, GeneralLog, no router, LLM only, general branch only)."""

from __future__ import annotations

import pyarrow as pa

from fusionlog.methods import Artifacts, Method, Needs, register
from fusionlog.modes import combine


@register("fusionlog-paper")
class FusionLogPaper(Method):
    """The paper's FusionLog: the distilled small model scores every window (both branches)."""

    needs = Needs(models=("general",), llm=("generallog",), distill=True)

    def score(self, art: Artifacts) -> pa.Table:
        return combine(art.ids, art.routes, art.small(art.models["distilled"]), {}, "none", art.threshold,
                       art.rounds or None)


@register("generallog")
class GeneralLog(Method):
    """General windows by the general-branch model, proprietary ones by the LLM + RAG (round-1 verdicts; an
    abstained window falls back to the small model)."""

    needs = Needs(models=("general",), llm=("generallog",))

    def score(self, art: Artifacts) -> pa.Table:
        return combine(art.ids, art.routes, art.small(art.models["general"]), art.llm("generallog"), "proprietary",
                       art.threshold, None)


@register("no-router")
class NoRouter(Method):
    """The small model aligned to every target window scores every window."""

    needs = Needs(models=("no-router",))

    def score(self, art: Artifacts) -> pa.Table:
        return combine(art.ids, art.routes, art.small(art.models["no-router"]), {}, "none", art.threshold, None)


@register("llm-only")
class LLMOnly(Method):
    """The LLM + RAG labels every window (abstained: score 0.5, scorer ``abstained``)."""

    needs = Needs(llm=("llm-only",))

    def score(self, art: Artifacts) -> pa.Table:
        return combine(art.ids, art.routes, None, art.llm("llm-only"), "all", art.threshold, None)


@register("general-only")
class GeneralOnly(Method):
    """The general-branch small model alone on every window (before distillation)."""

    needs = Needs(models=("general",))
    baseline = True

    def score(self, art: Artifacts) -> pa.Table:
        return combine(art.ids, art.routes, art.small(art.models["general"]), {}, "none", art.threshold, None)

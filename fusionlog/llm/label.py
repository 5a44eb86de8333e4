"""Label windows with the LLM: one call per distinct signature, a persistent cache, concurrent requests,
few-shot examples from the knowledge base, every prompt fitted to the model's context. Prints/returns
windows, signatures, calls, cache hits and abstentions (with a loud warning when too many abstain)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from fusionlog.config import LLMConfig
from fusionlog.llm.cache import VerdictCache, signature
from fusionlog.llm.client import Answer, ChatClient, Verdict
from fusionlog.llm.knowledge import Example, KnowledgeBase
from fusionlog.llm.prompt import Prompt, fit_messages

WARN_RATE = 0.2  # default of LLMConfig.abstain_warn_rate


@dataclass
class Window:
    window_id: str
    template_ids: list[int]
    templates: list[str]  # texts, in order
    vector: np.ndarray | None = None  # for retrieval


def abstention_warning(abstained: int, total: int, threshold: float = WARN_RATE, what: str = "signatures",
                       detail: str = "") -> str | None:
    """The warning for ``abstained`` of ``total`` labeling decisions when their share reaches ``threshold``
    (None below it, or with nothing decided)."""
    if total <= 0 or abstained <= 0 or abstained / total < threshold:
        return None
    more = f" ({detail})" if detail else ""
    return (f"the LLM abstained on {abstained} of {total} {what} ({abstained / total:.0%} >= {threshold:.0%})"
            f"{more}: those windows have no LLM label")


@dataclass
class LabelStats:
    windows: int = 0
    signatures: int = 0
    cache_hits: int = 0  # verdicts from the cache
    llm_calls: int = 0  # signatures sent to the LLM (HTTP requests incl. retries: client.stats.calls)
    abstained: int = 0  # signatures without a verdict (asked now, or remembered from this session)
    abstained_cached: int = 0  # of which remembered: not asked again
    abstained_windows: int = 0  # windows without a verdict
    refused: int = 0  # signatures the server refused as invalid (HTTP 4xx but 408/429), asked now or remembered
    unfit: int = 0  # signatures whose prompt could not fit the model's context (never sent)
    shrunk: int = 0  # prompts shortened to fit the context (examples shortened/dropped, window compacted/cut)
    reasons: dict[str, int] = field(default_factory=dict)  # abstention kind -> signatures
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def abstention_rate(self) -> float:
        """Share of the signatures without a verdict (0 without signatures)."""
        return self.abstained / self.signatures if self.signatures else 0.0

    def line(self) -> str:
        remembered = f", {self.abstained_cached} remembered" if self.abstained_cached else ""
        shrunk = f", {self.shrunk} prompts shrunk to fit" if self.shrunk else ""
        return (f"{self.windows} windows, {self.signatures} signatures, {self.llm_calls} LLM calls, "
                f"{self.cache_hits} cache hits, {self.abstained} abstained ({self.abstention_rate:.0%}"
                f"{remembered}){shrunk}, {self.seconds:.1f} s")

    def warning(self, threshold: float = WARN_RATE) -> str | None:
        """A message when the abstention rate reaches ``threshold`` (LLMConfig.abstain_warn_rate), else None."""
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.reasons.items(), key=lambda kv: -kv[1]))
        first = next((p for p in self.problems if not p.startswith("unfit")), self.problems[0] if self.problems
                     else "")
        detail = "; ".join(x for x in (kinds, f"first problem: {first[:160]}" if first else "") if x)
        return abstention_warning(self.abstained, self.signatures, threshold, "signatures", detail)

    def summary(self) -> dict:
        """JSON-able counts for a stage summary (the keys the report reads: signatures, calls, abstained)."""
        return {"windows": self.windows, "signatures": self.signatures, "calls": self.llm_calls,
                "cache_hits": self.cache_hits, "abstained": self.abstained,
                "abstained_cached": self.abstained_cached, "abstained_windows": self.abstained_windows,
                "refused": self.refused, "unfit": self.unfit, "shrunk": self.shrunk,
                "abstention_rate": round(self.abstention_rate, 4), "reasons": dict(self.reasons)}


Progress = Callable[[int, int], None]


def describe(system: str) -> str:
    """A system's description from ``conf/systems/<system>.yaml`` (its name when there is none)."""
    from fusionlog.config import ConfigError, load_system

    try:
        return load_system(system).description or system
    except ConfigError:
        return system


@dataclass
class Labeler:
    client: ChatClient
    prompt: Prompt
    system: str  # a short description of the system, e.g. "HDFS (Hadoop distributed file system)"
    cache: VerdictCache | None = None
    kb: KnowledgeBase | None = None
    k: int = 0  # few-shot examples per window (0: zero-shot)
    concurrency: int = 8
    signature_mode: str = "ordered"
    max_window_chars: int = 4000
    kb_system: str | None = None  # retrieve examples of this system only
    balanced: bool = False  # retrieve the k/2 nearest examples of each label

    @classmethod
    def from_config(cls, client: ChatClient, cfg: LLMConfig, system: str, **overrides: object) -> Labeler:
        """The labeler ``cfg`` describes (prompt, examples, concurrency, signatures, window size): the one front
        door every caller uses; ``overrides`` set fields for one use (e.g. ``k=0`` for zero-shot)."""
        from fusionlog.llm.prompt import load_prompt

        fields = {"prompt": load_prompt(cfg.prompt), "k": cfg.k_examples, "concurrency": cfg.concurrency,
                  "signature_mode": cfg.signature, "max_window_chars": cfg.max_window_chars,
                  "balanced": cfg.balanced_examples}
        return cls(client=client, system=system, **{**fields, **overrides})  # type: ignore[arg-type]

    def examples(self, w: Window) -> list[Example]:
        if self.kb is None or not self.k or w.vector is None:
            return []
        return self.kb.search(w.vector, self.k, self.kb_system, self.balanced)

    def label(self, windows: list[Window], progress: Progress | None = None,
              ) -> tuple[dict[str, Verdict | None], LabelStats]:
        """One call per distinct signature; the cache key's knowledge-base part is the hash of the examples this
        window retrieves (the part of the knowledge base its prompt sees): a grown knowledge base re-asks only
        windows whose neighbours changed. An abstention is remembered in the cache for this session (not asked
        again). Every prompt is fitted to the model's context (:func:`~fusionlog.llm.prompt.fit_messages`).

        ``progress(done, total)``: called with (0, total) before the first LLM call and after each finished one
        (from the worker threads, one call at a time, ``done`` increasing); ``total`` is the number of
        signatures sent to the LLM (cache hits excluded). An exception it raises stops further progress calls
        (recorded in ``problems``), never the labeling."""
        t0 = time.perf_counter()
        stats = LabelStats(windows=len(windows))
        groups: dict[str, list[Window]] = {}
        for w in windows:
            groups.setdefault(signature(w.template_ids, self.signature_mode), []).append(w)
        stats.signatures = len(groups)
        model, version = self.client.model, self.prompt.version
        verdicts: dict[str, Verdict | None] = {}
        kinds: Counter[str] = Counter()
        todo = []
        for sig, ws in groups.items():
            shots = [(e.label, e.window) for e in self.examples(ws[0])]
            kb_key = hashlib.sha256(json.dumps(shots).encode()).hexdigest()[:16] if shots else "none"
            hit = self.cache.get(model, version, sig, kb_key) if self.cache else None
            if hit is not None:
                stats.cache_hits += 1
                verdicts[sig] = hit
                continue
            known = self.cache.abstention(model, version, sig, kb_key) if self.cache else None
            if known is not None:
                stats.abstained_cached += 1
                kinds[known.kind] += 1
                verdicts[sig] = None
                continue
            todo.append((sig, ws[0], shots, kb_key))

        lock = threading.Lock()
        done = 0
        problems: list[str] = []
        report = progress

        def tick(n: int) -> None:
            nonlocal report
            if report is None:
                return
            try:
                report(n, len(todo))
            except Exception as exc:  # noqa: BLE001 (a broken progress display must not stop the labeling)
                problems.append(f"progress callback failed, disabled: {type(exc).__name__}: {exc}")
                report = None

        def ask(item: tuple[str, Window, list, str]) -> tuple[str, Answer, bool]:
            nonlocal done
            sig, w, shots, kb_key = item
            fitted = fit_messages(self.prompt, self.system, w.templates, shots, self.client.counter,
                                  self.client.prompt_budget(), self.max_window_chars)
            if fitted.messages is None:
                answer = self.client.unfit(f"{fitted.note()}; budget {self.client.prompt_budget()} tokens of a "
                                           f"{self.client.context_limit()}-token context")
            else:
                answer = self.client.ask(fitted.messages)
            if self.cache:
                if answer.verdict is not None:
                    self.cache.put(model, version, sig, kb_key, answer.verdict)
                else:
                    self.cache.put_abstention(model, version, sig, kb_key, answer.kind, answer.reason)
            with lock:
                done += 1
                tick(done)
            return sig, answer, fitted.shrunk

        stats.llm_calls = len(todo)
        if todo:
            with lock:
                tick(0)
            with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
                for sig, answer, shrunk in pool.map(ask, todo):
                    verdicts[sig] = answer.verdict
                    stats.shrunk += shrunk
                    if answer.verdict is None:
                        kinds[answer.kind] += 1
        stats.abstained = sum(v is None for v in verdicts.values())
        stats.abstained_windows = sum(len(groups[sig]) for sig, v in verdicts.items() if v is None)
        stats.refused, stats.unfit = kinds["refused"], kinds["unfit"]
        stats.reasons = dict(kinds)
        stats.problems = list(self.client.stats.problems) + problems
        stats.seconds = time.perf_counter() - t0
        out = {w.window_id: verdicts[sig] for sig, ws in groups.items() for w in ws}
        return out, stats

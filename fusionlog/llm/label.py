"""Label windows with the LLM: one call per distinct signature, a persistent cache, concurrent requests,
few-shot examples from the knowledge base. Prints/returns windows, signatures, calls and cache hits."""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from fusionlog.llm.cache import VerdictCache, signature
from fusionlog.llm.client import ChatClient, Verdict
from fusionlog.llm.knowledge import Example, KnowledgeBase
from fusionlog.llm.prompt import Prompt, build_messages, render_window


@dataclass
class Window:
    window_id: str
    template_ids: list[int]
    templates: list[str]  # texts, in order
    vector: np.ndarray | None = None  # for retrieval


@dataclass
class LabelStats:
    windows: int = 0
    signatures: int = 0
    cache_hits: int = 0
    llm_calls: int = 0  # signatures sent to the LLM (HTTP requests incl. retries: client.stats.calls)
    abstained: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.windows} windows, {self.signatures} signatures, {self.llm_calls} LLM calls, "
                f"{self.cache_hits} cache hits, {self.abstained} abstained, {self.seconds:.1f} s")


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

    def examples(self, w: Window) -> list[Example]:
        if self.kb is None or not self.k or w.vector is None:
            return []
        return self.kb.search(w.vector, self.k, self.kb_system, self.balanced)

    def label(self, windows: list[Window]) -> tuple[dict[str, Verdict | None], LabelStats]:
        """One call per distinct signature; the cache key's knowledge-base part is the hash of the examples this
        window retrieves (the part of the knowledge base its prompt sees): a grown knowledge base re-asks only
        windows whose neighbours changed."""
        t0 = time.perf_counter()
        stats = LabelStats(windows=len(windows))
        groups: dict[str, list[Window]] = {}
        for w in windows:
            groups.setdefault(signature(w.template_ids, self.signature_mode), []).append(w)
        stats.signatures = len(groups)
        model, version = self.client.model, self.prompt.version
        verdicts: dict[str, Verdict | None] = {}
        todo = []
        for sig, ws in groups.items():
            shots = [(e.label, e.window) for e in self.examples(ws[0])]
            kb_key = hashlib.sha256(json.dumps(shots).encode()).hexdigest()[:16] if shots else "none"
            hit = self.cache.get(model, version, sig, kb_key) if self.cache else None
            if hit is not None:
                stats.cache_hits += 1
                verdicts[sig] = hit
            else:
                todo.append((sig, ws[0], shots, kb_key))

        def ask(item: tuple[str, Window, list, str]) -> tuple[str, Verdict | None]:
            sig, w, shots, kb_key = item
            text = render_window(w.templates, max_chars=self.max_window_chars)
            v = self.client.verdict(build_messages(self.prompt, self.system, text, shots))
            if v is not None and self.cache:
                self.cache.put(model, version, sig, kb_key, v)
            return sig, v

        stats.llm_calls = len(todo)
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            for sig, v in pool.map(ask, todo):
                verdicts[sig] = v
        stats.abstained = sum(v is None for v in verdicts.values())
        stats.problems = list(self.client.stats.problems)
        stats.seconds = time.perf_counter() - t0
        out = {w.window_id: verdicts[sig] for sig, ws in groups.items() for w in ws}
        return out, stats

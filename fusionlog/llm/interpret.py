"""Plain-language interpretations of a system's events (LogSynergy's *LEI*, log event interpretation): one short
generated explanation per distinct event ("what happened, where, what it means for the system"), cached per
(model, prompt version, event) and written to ``interpretations/system=<s>/`` by the judge stage when
``llm.event_interpret_prompt`` is set. An event question with an ``{interpretation}`` field
(``prompts/event_interpreted_v1.txt``) then reads it beside the message.

The text is the LLM's output, so untrusted: whitespace collapsed, cut at :data:`MAX_CHARS`, and passed through
:func:`~fusionlog.llm.prompt.clean` (control characters, marker look-alikes, text addressed to the labeler
withheld); the event question quotes it as data and tells the model it may be wrong. An event the LLM gave no
text for has none (null): the question then shows ``(none)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from fusionlog.llm.cache import ProbabilityCache
from fusionlog.llm.client import ChatClient
from fusionlog.llm.judge import Event, event_key, messages
from fusionlog.llm.prompt import clean, load_prompt

INTERPRETATIONS = pa.schema([("template_id", pa.int64()), ("interpretation", pa.string())])
MAX_CHARS = 400
MAX_TOKENS = 80


@dataclass
class InterpretStats:
    events: int = 0
    asked: int = 0  # generation calls sent to the LLM (the rest came from the cache)
    cache_hits: int = 0
    abstained: int = 0  # events left without an interpretation
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.events} events interpreted: {self.asked} asked, {self.cache_hits} from cache, "
                f"{self.abstained} without text, {self.seconds:.1f} s")


def interpret(client: ChatClient | Callable[[], ChatClient], system: str, events: list[Event],
              prompt: str = "event_interpret_v1", cache: ProbabilityCache | None = None, concurrency: int = 8,
              progress: Callable[[int, int], None] | None = None, model: str | None = None,
              max_tokens: int = MAX_TOKENS) -> tuple[pa.Table, InterpretStats]:
    """Every event's interpretation (:data:`INTERPRETATIONS` rows) and the stats. ``client`` may be a function that
    connects; it is called only when the cache lacks a text, and then ``model`` (the cache key's) must be given."""
    from fusionlog.llm.label import describe

    p = load_prompt(prompt)
    desc = describe(system)
    st = InterpretStats(events=len(events))
    t0 = time.perf_counter()
    if isinstance(client, ChatClient):
        model = client.model
    elif model is None:
        raise ValueError("interpret: give the model name with a client factory")
    got: dict[int, str | None] = {}
    todo = []
    for ev in events:
        hit = cache.get_text(model, p.version, event_key(desc, ev)) if cache else None
        if hit is not None:
            got[ev.template_id] = hit
            st.cache_hits += 1
        else:
            todo.append(ev)
    conn = (client if isinstance(client, ChatClient) else client()) if todo else None

    def ask(ev: Event) -> tuple[Event, str | None, str]:
        assert conn is not None
        ans = conn.text(messages(p, desc, ev), max_tokens)
        return ev, None if ans.text is None else clean(ans.text, MAX_CHARS), ans.reason

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for done, (ev, text, reason) in enumerate(pool.map(ask, todo), 1):
            st.asked += 1
            got[ev.template_id] = text
            if text is None:
                if len(st.problems) < 10:
                    st.problems.append(f"event {ev.template_id}: {reason}")
            elif cache:
                cache.put_text(model, p.version, event_key(desc, ev), text)
            if progress:
                progress(done, len(todo))
    st.abstained = sum(got[ev.template_id] is None for ev in events)
    st.seconds = time.perf_counter() - t0
    return pa.table({"template_id": [ev.template_id for ev in events],
                     "interpretation": [got[ev.template_id] for ev in events]}, schema=INTERPRETATIONS), st


def write_interpretations(run: Path, system: str, table: pa.Table) -> None:
    """``interpretations/system=<system>/`` (atomically)."""
    from fusionlog.rundir import write_partition

    write_partition(run, "interpretations", system, table.cast(INTERPRETATIONS))


def read_interpretations(run: Path, system: str) -> dict[int, str | None]:
    """template id -> interpretation (None: the LLM gave none); an error says to run the judge stage with them."""
    from fusionlog.rundir import read_partition

    t = read_partition(run, "interpretations", system, ["template_id", "interpretation"],
                       "run the judge stage with llm.event_interpret_prompt set")
    return dict(zip(t["template_id"].to_pylist(), t["interpretation"].to_pylist(), strict=True))

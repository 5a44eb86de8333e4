"""Versioned prompt files; windows rendered as data between markers, compressed and capped.

A prompt file (``prompts/<name>.txt``) has the sections ``### system``, ``### user`` (a window prompt: with
``{system}``, ``{examples}``, ``{window}``; an event prompt: ``{system}``, ``{level}``, ``{component}``, ``{event}``)
and, for window prompts, ``### example`` (``{label}``, ``{window}``). Its version is
the file name plus a hash of its text, so a changed prompt never reuses cached answers.

:func:`fit_messages` fits a window's prompt to the model's context (tokens counted with the model's own
tokenizer when it is a local directory, else a conservative bytes-per-token estimate): the few-shot examples
shrink first, then the window (each distinct template once, then a middle cut).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

PROMPTS = Path(__file__).parent / "prompts"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_MARKERS = re.compile(r"<<<\s*LOGS|LOGS\s*>>>", re.IGNORECASE)
# text that addresses the labeler rather than describing what a system did: withheld from the prompt
# (the window keeps a visible placeholder, so the attempt itself stays in evidence)
_ADDRESSED = re.compile(
    r"(ignore|disregard|forget)\s+(all\s+|any\s+|the\s+)?(previous|prior|above|earlier)\s+(instructions|prompts?|rules)"
    r"|\byou\s+are\s+(now|an?)\b|\b(system|assistant)\s*:|\"label\"\s*:|\banswer\s+(with\s+)?[{\"]"
    r"|\b(classify|label)\s+(this|it|the\s+window)\s+as\b",
    re.IGNORECASE,
)
WITHHELD = "[log text withheld: it addresses the labeler]"


@dataclass(frozen=True)
class Prompt:
    name: str
    system: str
    user: str
    example: str
    version: str
    quote_lines: bool = False  # each event as a JSON string (data, visibly)
    sections: tuple[tuple[str, str], ...] = ()  # every section of the file by name (e.g. a triage prompt's kinds)


def load_prompt(name: str = "label_v2") -> Prompt:
    path = PROMPTS / f"{name}.txt"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in PROMPTS.glob("*.txt")))
        raise ValueError(f"unknown prompt {name!r} (known: {known})")
    text = path.read_text(encoding="utf-8")
    parts = dict(re.findall(r"^### (\w+)\n(.*?)(?=^### |\Z)", text, flags=re.M | re.S))
    missing = {"system", "user"} - set(parts)
    if missing:
        raise ValueError(f"{path}: missing sections {sorted(missing)}")
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    options = dict(re.findall(r"^(\w+):\s*(\S+)\s*$", parts.get("options", ""), flags=re.M))
    unknown = set(options) - {"quote_lines"}
    if unknown:
        raise ValueError(f"{path}: unknown options {sorted(unknown)}")
    return Prompt(name, parts["system"].strip(), parts["user"].strip(), parts.get("example", "").strip(),
                  f"{name}@{digest}",
                  options.get("quote_lines", "false").lower() == "true",
                  tuple((k, v.strip()) for k, v in parts.items()))


def addresses_labeler(text: str) -> bool:
    """Log text that looks like an instruction to the labeling model (prompt injection)."""
    return bool(_ADDRESSED.search(text))


def clean(text: str, cap: int) -> str:
    """One log template as inert data: no control characters, no marker look-alikes, no text addressed to the
    labeler, at most ``cap`` chars."""
    if addresses_labeler(text):
        return WITHHELD
    text = _MARKERS.sub("[marker]", _CONTROL.sub(" ", text)).replace("\n", " ")
    return text if len(text) <= cap else text[: cap - 1] + "…"


def _runs(templates: list[str], cap: int) -> list[tuple[int, str]]:
    runs: list[tuple[int, str]] = []
    for t in templates:
        t = clean(t, cap)
        if runs and runs[-1][1] == t:
            runs[-1] = (runs[-1][0] + 1, t)
        else:
            runs.append((1, t))
    return runs


def _cut(lines: list[str], max_chars: int, what: str = "lines") -> str:
    """``lines`` joined; when longer than ``max_chars``, the middle is cut (the start and the end kept)."""
    text = "\n".join(lines)
    if len(text) <= max_chars:
        return text
    head: list[str] = []
    tail: list[str] = []
    used = 0
    for i in range(len(lines)):
        for side, line in ((head, lines[i]), (tail, lines[-1 - i])):
            if used + len(line) + 1 > max_chars - 40:
                cut = len(lines) - len(head) - len(tail)
                return "\n".join([*head, f"[... {cut} {what} cut ...]", *reversed(tail)])
            side.append(line)
            used += len(line) + 1
    return text


def render_window(templates: list[str], max_template_chars: int = 300, max_chars: int = 4000) -> str:
    """Templates in order, one per line; runs of one template become ``(xN)``; the whole is capped
    (the middle is cut, keeping the start and the end of the window)."""
    out = [f"{t} (x{n})" if n > 1 else t for n, t in _runs(templates, max_template_chars)]
    return _cut(out, max_chars)


COMPACT_NOTE = "[distinct events in order of first occurrence; (xN) = N times in the window]"


def render_compact(templates: list[str], max_template_chars: int = 300, max_chars: int = 4000) -> str:
    """The shrunk form of a window that does not fit the model's context: each distinct template once, in order
    of first occurrence, ``(xN)`` its count in the whole window (a note line says so); then capped like
    :func:`render_window`. A system-agnostic choice: nothing is guessed from a dataset's words."""
    counts: dict[str, int] = {}
    for t in templates:
        t = clean(t, max_template_chars)
        counts[t] = counts.get(t, 0) + 1
    out = [f"{t} (x{n})" if n > 1 else t for t, n in counts.items()]
    return _cut([COMPACT_NOTE, *out], max_chars, "distinct events")


def shorten(text: str, max_chars: int) -> str:
    """A rendered window (e.g. a few-shot example) cut to ``max_chars``: its middle lines, then the line itself."""
    if len(text) <= max_chars:
        return text
    lines = [line if len(line) <= max_chars // 2 else line[: max_chars // 2 - 1] + "…" for line in text.splitlines()]
    out = _cut(lines, max_chars)
    return out if len(out) <= max_chars else out[: max_chars - 1] + "…"


def build_messages(prompt: Prompt, system: str, window: str, examples: list[tuple[str, str]]) -> list[dict]:
    """Chat messages; ``examples`` are (label, rendered window) pairs from the knowledge base."""
    if prompt.quote_lines:
        def quote(text: str) -> str:
            return "\n".join(json.dumps(line, ensure_ascii=False) for line in text.splitlines())

        window, examples = quote(window), [(label, quote(w)) for label, w in examples]
    shots = "".join(prompt.example.format(label=label, window=w) + "\n\n" for label, w in examples)
    user = prompt.user.format(system=clean(system, 200), examples=shots, window=window)
    return [{"role": "system", "content": prompt.system}, {"role": "user", "content": user}]


# ---------------------------------------------------------------- fitting a prompt to the model's context

# UTF-8 bytes per token, for endpoints whose tokenizer is not on this machine. Measured with Qwen2.5's tokenizer
# on prompts of real templates (data/: the 16 loghub systems, HDFS and OpenStack sequences; both prompt
# versions): 3.5 to 4.3 bytes per token; Chinese text 2.9. 2.0 over-counts them all, by 1.5x to 2x
# (tests/test_llm_context.py checks it on the real tokenizer); the hard bound of a byte-level BPE, one byte per
# token, would halve the usable context again. Long digit runs (a token per digit) come close to it, but windows
# carry templates, whose variables are masked as <*>. A count that still falls short meets the server's HTTP 400:
# refused, counted and reported, never retried.
BYTES_PER_TOKEN = 2.0
# what a chat template adds around each message and for the answer's start (ChatML: 5 and 3; others ~ 4-10)
MESSAGE_OVERHEAD = 10
# kept free besides max_tokens (the server may count a token or two differently, e.g. a BOS)
SAFETY_TOKENS = 16
EXAMPLE_FLOOR = 200  # few-shot examples are shortened to no less than this many chars before they are dropped
MIN_WINDOW_CHARS = 60  # a window shrunk below this is no window: nothing fits, the labeler abstains


class TokenCounter(Protocol):
    name: str

    def count(self, messages: list[dict]) -> int:
        """Prompt tokens of these chat messages, answer prefix included."""


@dataclass(frozen=True)
class ByteEstimate:
    """A conservative estimate (no tokenizer): ``ceil(utf8 bytes / bytes_per_token)`` per message plus the chat
    template's overhead. Over-counts real log prompts (see :data:`BYTES_PER_TOKEN`)."""

    bytes_per_token: float = BYTES_PER_TOKEN
    overhead: int = MESSAGE_OVERHEAD
    name: str = "estimate"

    def count(self, messages: list[dict]) -> int:
        return self.overhead + sum(math.ceil(len(str(m.get("content") or "").encode("utf-8")) / self.bytes_per_token)
                                   + self.overhead for m in messages)


class HFTokenizer:
    """Exact counts with a local model directory's own tokenizer and chat template (loaded offline, never
    downloaded; ``transformers`` comes with vllm). Thread-safe."""

    def __init__(self, path: str | Path) -> None:
        from transformers import AutoTokenizer

        self.path = Path(path).expanduser()
        self.tok = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        self.name = f"tokenizer:{self.path.name}"
        self._lock = threading.Lock()
        self._templated = bool(getattr(self.tok, "chat_template", None))

    def count(self, messages: list[dict]) -> int:
        with self._lock:  # a fast tokenizer is not safe to share between threads
            if self._templated:
                ids = self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
                if isinstance(ids, Mapping):  # transformers >= 5 returns a BatchEncoding
                    ids = ids["input_ids"]
                return len(ids)
            return MESSAGE_OVERHEAD + sum(len(self.tok.encode(str(m.get("content") or ""), add_special_tokens=False))
                                          + MESSAGE_OVERHEAD for m in messages)


def has_tokenizer(path: str | Path | None) -> bool:
    """A local directory with tokenizer files (``tokenizer.json`` or ``tokenizer_config.json``)."""
    if not path:
        return False
    p = Path(path).expanduser()
    return p.is_dir() and any((p / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))


def token_counter(path: str | Path | None) -> tuple[TokenCounter, str]:
    """The model's own tokenizer when ``path`` is a local model directory, else :class:`ByteEstimate`;
    with a note saying which and why."""
    if not has_tokenizer(path):
        return ByteEstimate(), f"no local tokenizer ({path or 'remote model'}): prompt tokens estimated at " \
                               f"{BYTES_PER_TOKEN} bytes per token"
    try:
        counter = HFTokenizer(path)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 (any loading failure: fall back, and say so)
        return ByteEstimate(), f"the tokenizer in {path} did not load ({type(exc).__name__}: {exc}): prompt " \
                               f"tokens estimated at {BYTES_PER_TOKEN} bytes per token"
    return counter, f"prompt tokens counted with the tokenizer of {path}"


@dataclass
class Fitted:
    """A prompt fitted to the token budget; ``messages`` None when even a minimal one does not fit."""

    messages: list[dict] | None
    tokens: int
    examples: int  # few-shot examples kept
    examples_given: int
    window: str  # "ordered" (render_window, whole) | "compact" (each distinct template once) | "cut" (compact, cut)
    shrunk: bool  # the budget cost something: examples shortened or dropped, the window compacted or cut

    def note(self) -> str:
        if self.messages is None:
            return f"prompt does not fit even without examples and with a {MIN_WINDOW_CHARS}-char window " \
                   f"({self.tokens} tokens)"
        return f"{self.tokens} tokens, {self.examples}/{self.examples_given} examples, window {self.window}"


def fit_messages(prompt: Prompt, system: str, templates: list[str], examples: list[tuple[str, str]],
                 counter: TokenCounter, budget: int, max_window_chars: int = 4000) -> Fitted:
    """Chat messages for one window whose prompt takes at most ``budget`` tokens (by ``counter``).

    The window is rendered in order (:func:`render_window`) when that fits ``max_window_chars`` whole, else in
    its compact form (:func:`render_compact`: each distinct template once, in order of first occurrence, ``(xN)``
    its count), which keeps every kind of event a middle cut would lose. Then, in order, until the prompt fits:
    (1) the examples (nearest first) are shortened, halving their cap down to :data:`EXAMPLE_FLOOR` chars;
    (2) they are dropped, the farthest first; (3) the window takes its compact form; (4) its templates are capped
    at 160 then 80 chars; (5) its middle is cut (start and end kept), as little as needed. The returned messages
    never exceed the budget: when nothing fits, ``messages`` is None.
    """
    def count(window: str, shots: list[tuple[str, str]]) -> tuple[list[dict], int]:
        msgs = build_messages(prompt, system, window, shots)
        return msgs, counter.count(msgs)

    def whole(cap: int) -> str | None:
        """The compact window with templates capped at ``cap`` chars, if it fits ``max_window_chars`` uncut."""
        text = render_compact(templates, cap, max_chars=1 << 30)
        return text if len(text) <= max_window_chars else None

    given = len(examples)
    window, kind = render_window(templates, max_chars=1 << 30), "ordered"
    if len(window) > max_window_chars:  # a middle cut would lose kinds of event: the compact form, cut if need be
        compact = whole(300)
        window, kind = (compact, "compact") if compact else (render_compact(templates, 300, max_window_chars), "cut")
    first = kind

    def done(msgs: list[dict], n: int, shots: list, kind: str) -> Fitted:
        return Fitted(msgs, n, len(shots), given, kind, kind != first or shots != examples)

    msgs, n = count(window, examples)
    if n <= budget:
        return done(msgs, n, examples, kind)
    shots = list(examples)
    if shots:  # (1) shorten every example, halving the cap
        cap = max(len(w) for _, w in shots)
        while cap > EXAMPLE_FLOOR:
            cap = max(EXAMPLE_FLOOR, cap // 2)
            shots = [(label, shorten(w, cap)) for label, w in examples]
            msgs, n = count(window, shots)
            if n <= budget:
                return done(msgs, n, shots, kind)
    while shots:  # (2) drop the farthest example
        shots.pop()
        msgs, n = count(window, shots)
        if n <= budget:
            return done(msgs, n, shots, kind)
    for cap in (300, 160, 80):  # (3) + (4) each distinct template once
        text = whole(cap)
        if text is not None:
            msgs, n = count(text, [])
            if n <= budget:
                return done(msgs, n, [], "compact")
    text = render_compact(templates, 80, max_chars=max_window_chars)
    best: tuple[list[dict], int] | None = None  # (5) the largest middle cut that fits
    lo, hi = MIN_WINDOW_CHARS, min(len(text) - 1, max_window_chars)
    while lo <= hi:
        mid = (lo + hi) // 2
        m, k = count(render_compact(templates, 80, max_chars=mid), [])
        if k <= budget:
            best, lo = (m, k), mid + 1
        else:
            hi, n = mid - 1, k
    if best is None:
        return Fitted(None, n, 0, given, "cut", True)
    return done(best[0], best[1], [], "cut")

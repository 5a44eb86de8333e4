"""Versioned prompt files; windows rendered as data between markers, compressed and capped.

A prompt file (``prompts/<name>.txt``) has three sections: ``### system``, ``### user`` (with
``{system}``, ``{examples}``, ``{window}``) and ``### example`` (``{label}``, ``{window}``). Its version is
the file name plus a hash of its text, so a changed prompt never reuses cached answers.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

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


def load_prompt(name: str = "label_v2") -> Prompt:
    path = PROMPTS / f"{name}.txt"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in PROMPTS.glob("*.txt")))
        raise ValueError(f"unknown prompt {name!r} (known: {known})")
    text = path.read_text(encoding="utf-8")
    parts = dict(re.findall(r"^### (\w+)\n(.*?)(?=^### |\Z)", text, flags=re.M | re.S))
    missing = {"system", "user", "example"} - set(parts)
    if missing:
        raise ValueError(f"{path}: missing sections {sorted(missing)}")
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    options = dict(re.findall(r"^(\w+):\s*(\S+)\s*$", parts.get("options", ""), flags=re.M))
    unknown = set(options) - {"quote_lines"}
    if unknown:
        raise ValueError(f"{path}: unknown options {sorted(unknown)}")
    return Prompt(name, parts["system"].strip(), parts["user"].strip(), parts["example"].strip(), f"{name}@{digest}",
                  options.get("quote_lines", "false").lower() == "true")


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


def render_window(templates: list[str], max_template_chars: int = 300, max_chars: int = 4000) -> str:
    """Templates in order, one per line; runs of one template become ``(xN)``; the whole is capped
    (the middle is cut, keeping the start and the end of the window)."""
    runs: list[tuple[int, str]] = []
    for t in templates:
        t = clean(t, max_template_chars)
        if runs and runs[-1][1] == t:
            runs[-1] = (runs[-1][0] + 1, t)
        else:
            runs.append((1, t))
    out = [f"{t} (x{n})" if n > 1 else t for n, t in runs]
    text = "\n".join(out)
    if len(text) <= max_chars:
        return text
    head: list[str] = []
    tail: list[str] = []
    used = 0
    for i in range(len(out)):
        for side, line in ((head, out[i]), (tail, out[-1 - i])):
            if used + len(line) + 1 > max_chars - 40:
                cut = len(out) - len(head) - len(tail)
                return "\n".join([*head, f"[... {cut} lines cut ...]", *reversed(tail)])
            side.append(line)
            used += len(line) + 1
    return text


def build_messages(prompt: Prompt, system: str, window: str, examples: list[tuple[str, str]]) -> list[dict]:
    """Chat messages; ``examples`` are (label, rendered window) pairs from the knowledge base."""
    if prompt.quote_lines:
        def quote(text: str) -> str:
            return "\n".join(json.dumps(line, ensure_ascii=False) for line in text.splitlines())

        window, examples = quote(window), [(label, quote(w)) for label, w in examples]
    shots = "".join(prompt.example.format(label=label, window=w) + "\n\n" for label, w in examples)
    user = prompt.user.format(system=clean(system, 200), examples=shots, window=window)
    return [{"role": "system", "content": prompt.system}, {"role": "user", "content": user}]

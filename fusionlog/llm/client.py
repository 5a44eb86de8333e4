"""One client for every OpenAI-compatible chat endpoint (our Ray Serve vLLM app, or any server the user
names): JSON-schema structured output, validation, retries with backoff, a timeout, then abstention.
A request the server refuses as invalid (HTTP 4xx but 408/429) is never retried: it is counted ``refused``.
The model's context length is read once (config, else ``GET /models``, else a default) for prompt fitting.

The model's answer is untrusted data: it is parsed as JSON and validated against :class:`Verdict`; it is
never executed or interpreted further.
"""

from __future__ import annotations

import json
import math
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fusionlog.llm.prompt import SAFETY_TOKENS, ByteEstimate, TokenCounter

LABELS = ("normal", "anomalous")


class Verdict(BaseModel):
    """What the LLM must return; ``label`` first so that it is decoded first."""

    model_config = ConfigDict(extra="forbid")
    label: Literal["normal", "anomalous"]
    confidence: float = Field(ge=0.0, le=1.0)
    reason: str = Field(max_length=300)


SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": list(LABELS)},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "reason": {"type": "string", "maxLength": 100},  # fits max_tokens with the other two fields
    },
    "required": ["label", "confidence", "reason"],
    "additionalProperties": False,
}


@dataclass
class CallStats:
    calls: int = 0  # HTTP requests sent
    retries: int = 0
    invalid: int = 0  # answers that were not a valid Verdict
    errors: int = 0  # transient failures (HTTP 429 / 408 / 5xx, timeouts, unreachable): retried
    refused: int = 0  # requests the server rejected as invalid (HTTP 4xx but 408/429): sent once, never retried
    unfit: int = 0  # prompts that could not fit the model's context: never sent
    abstained: int = 0  # verdicts not given (every cause above, after its retries)
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


@dataclass
class Answer:
    """One labeling attempt's outcome: a verdict, or an abstention with its kind and reason."""

    verdict: Verdict | None
    kind: str = "verdict"  # verdict | no-logprobs | refused | error | invalid | unfit
    reason: str = ""
    value: float | None = None  # a probability answer (:meth:`ChatClient.yes_probability`)
    text: str | None = None  # a free-text answer (:meth:`ChatClient.text`), untrusted: the caller cleans it
    shares: dict[str, float] | None = None  # each one-token answer's probability (ChatClient.choice_probabilities)


class _Invalid(Exception):
    """An answer that does not parse (retried, then an abstention of kind ``invalid``)."""


RETRY_STATUS = frozenset({408, 429})  # 4xx statuses that mean "later", not "never"
DEFAULT_CONTEXT = 2048  # tokens, when neither the config nor the server says (most served models have more)


def _status_detail(exc: urllib.error.HTTPError) -> str:
    try:
        body = exc.read().decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 (a body that cannot be read is no detail)
        body = ""
    try:
        doc = json.loads(body)
        err = doc.get("error", doc) if isinstance(doc, dict) else doc
        body = str(err.get("message", err) if isinstance(err, dict) else err)
    except (json.JSONDecodeError, AttributeError):
        pass
    return " ".join(body.split())[:200] or str(exc.reason)


def context_of(models: dict, model: str) -> int | None:
    """The context length (tokens) a ``GET /models`` answer gives for ``model``: vLLM's ``max_model_len``, Ray
    Serve LLM's ``metadata.max_request_context_length``, or a ``context_length``/``context_window`` field."""
    data = models.get("data") if isinstance(models, dict) else None
    if not isinstance(data, list):
        return None
    cards = [c for c in data if isinstance(c, dict)]
    mine = [c for c in cards if c.get("id") == model] or (cards if len(cards) == 1 else [])
    for card in mine:
        meta = card.get("metadata") if isinstance(card.get("metadata"), dict) else {}
        for v in (card.get("max_model_len"), meta.get("max_request_context_length"), meta.get("max_model_len"),
                  card.get("context_length"), card.get("context_window")):
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
    return None


class ChatClient:
    """POST ``{base_url}/chat/completions``; ``api_key_env`` names the environment variable of the key.

    ``context_tokens``: the model's context length (None: ``GET {base_url}/models`` once, then
    ``default_context``, then :data:`DEFAULT_CONTEXT`); ``counter`` counts prompt tokens (default: the
    conservative :class:`~fusionlog.llm.prompt.ByteEstimate`)."""

    def __init__(self, base_url: str, model: str, *, api_key_env: str | None = None, timeout_s: float = 120.0,
                 max_tokens: int = 128, retries: int = 3, backoff_s: float = 1.0, structured: bool = True,
                 context_tokens: int | None = None, default_context: int | None = None,
                 counter: TokenCounter | None = None, counter_note: str = "") -> None:
        self.base = base_url.rstrip("/")
        self.url = self.base + "/chat/completions"
        self.model = model
        self.key = os.environ.get(api_key_env, "") if api_key_env else ""
        if api_key_env and not self.key:
            raise ValueError(f"the LLM API key variable {api_key_env} is not set")
        self.timeout_s, self.max_tokens, self.retries, self.backoff_s = timeout_s, max_tokens, retries, backoff_s
        self.structured = structured
        self.context_tokens, self.default_context = context_tokens, default_context
        self.counter: TokenCounter = counter or ByteEstimate()
        self.counter_note = counter_note or f"prompt tokens: {self.counter.name}"
        self.context_source = ""
        self._context: int | None = None
        self._context_lock = threading.Lock()
        self._lock = threading.Lock()
        self.stats = CallStats()

    def _headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", **({"Authorization": f"Bearer {self.key}"} if self.key else {})}

    def _post(self, body: dict) -> dict:
        req = urllib.request.Request(self.url, data=json.dumps(body).encode(), method="POST", headers=self._headers())
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 (URL from config)
            return json.loads(resp.read().decode("utf-8"))

    def server_context(self) -> int | None:
        """The context length ``GET {base_url}/models`` reports for this model (None: not reported/reachable)."""
        req = urllib.request.Request(self.base + "/models", method="GET", headers=self._headers())
        try:
            with urllib.request.urlopen(req, timeout=min(self.timeout_s, 10.0)) as resp:  # noqa: S310
                return context_of(json.loads(resp.read().decode("utf-8")), self.model)
        except (urllib.error.URLError, TimeoutError, OSError, ValueError):
            return None

    def context_limit(self) -> int:
        """The model's context length in tokens, found once: config, else the server, else the defaults."""
        with self._context_lock:
            if self._context is None:
                found = [(self.context_tokens, "config")]
                if not self.context_tokens:
                    found.append((self.server_context(), "server"))
                found += [(self.default_context, "serve config"), (DEFAULT_CONTEXT, "default")]
                self._context, self.context_source = next((n, src) for n, src in found if n)
            return self._context

    def prompt_budget(self) -> int:
        """Tokens a prompt may take: the context less the answer's ``max_tokens`` and a safety margin."""
        return self.context_limit() - self.max_tokens - SAFETY_TOKENS

    def describe(self) -> str:
        """One line for the console: the context limit, where it came from, and how prompt tokens are counted."""
        n = self.context_limit()
        return (f"LLM context {n} tokens ({self.context_source}); prompts fitted to {self.prompt_budget()} tokens "
                f"(max_tokens {self.max_tokens} kept free); {self.counter_note}")

    def verdict(self, messages: list[dict]) -> Verdict | None:
        """A validated verdict, or None (abstain); see :meth:`ask`."""
        return self.ask(messages).verdict

    def ask(self, messages: list[dict]) -> Answer:
        """A validated verdict, or an abstention: at once when the server refuses the request as invalid (HTTP
        4xx but 408/429: the same request would be refused again), else after ``retries`` failed attempts
        (transient errors, timeouts, invalid answers) with exponential backoff."""
        body = {"model": self.model, "messages": messages, "max_tokens": self.max_tokens, "temperature": 0.0}
        if self.structured:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "verdict", "schema": SCHEMA, "strict": True}}

        def parse(choice: dict) -> Verdict:
            text = choice["message"]["content"] or ""
            if choice.get("finish_reason") == "length":
                raise _Invalid(f"answer cut at max_tokens={self.max_tokens}: {text[:120]!r}")
            try:
                return Verdict.model_validate(json.loads(text))
            except (json.JSONDecodeError, ValidationError) as exc:
                raise _Invalid(f"invalid answer ({type(exc).__name__}): {text[:120]!r}") from exc

        return self._request(body, parse)

    def yes_probability(self, messages: list[dict], top_logprobs: int = 20) -> Answer:
        """P(yes) of a yes/no question answered in one token, from the answer token's log-probabilities (the
        OpenAI ``logprobs``/``top_logprobs`` fields, which vLLM returns): the probability mass of the tokens that
        read "yes" over that of "yes" and "no" (case and spaces ignored). ``Answer.value`` holds it; ``kind``
        ``no-logprobs`` (still a value: 1.0/0.0 from the generated token) when the endpoint returns none, so the
        caller can say so; ``invalid`` (retried) when neither word is among the top tokens."""
        ans = self.choice_probabilities(messages, ("yes", "no"), top_logprobs)
        return replace(ans, value=ans.shares["yes"]) if ans.shares else ans

    def choice_probabilities(self, messages: list[dict], words: tuple[str, ...], top_logprobs: int = 20) -> Answer:
        """The probability of each of ``words`` (lower case) as the one-token answer, among them only (they sum to
        1), in ``Answer.shares``: e.g. the letters of a multiple-choice question. Read as :meth:`yes_probability`
        reads "yes" against "no"; without log-probabilities, 1 for the generated word (``no-logprobs``)."""
        body = {"model": self.model, "messages": messages, "max_tokens": 1, "temperature": 0.0, "logprobs": True,
                "top_logprobs": top_logprobs}

        def parse(choice: dict) -> tuple[dict[str, float], str]:
            content = (choice.get("logprobs") or {}).get("content") or []
            text = (choice["message"]["content"] or "").strip().lower()
            if not content or not content[0].get("top_logprobs"):
                if text in words:
                    return {w: float(w == text) for w in words}, "no-logprobs"
                raise _Invalid(f"no logprobs, and the answer is not one of {', '.join(words)}: {text[:40]!r}")
            mass = dict.fromkeys(words, 0.0)
            for alt in content[0]["top_logprobs"]:
                word = str(alt.get("token", "")).strip().lower()
                if word in mass and isinstance(alt.get("logprob"), (int, float)):
                    mass[word] += math.exp(float(alt["logprob"]))
            total = sum(mass.values())
            if total <= 0:
                raise _Invalid(f"none of {', '.join(words)} among the top {top_logprobs} tokens (answer {text[:40]!r})")
            return {w: m / total for w, m in mass.items()}, "verdict"

        return self._request(body, parse)

    def text(self, messages: list[dict], max_tokens: int = 80) -> Answer:
        """A short free-text answer (greedy, at most ``max_tokens``; one cut at the limit keeps its whole
        sentences). ``invalid`` (retried) when empty. The text is untrusted data: the caller cleans and caps it."""
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": 0.0}

        def parse(choice: dict) -> tuple[str, str]:
            text = " ".join((choice["message"]["content"] or "").split())
            if choice.get("finish_reason") == "length" and "." in text[:-1]:
                text = text[: text.rindex(".", 0, len(text) - 1) + 1]
            if not text:
                raise _Invalid("empty answer")
            return text, "text"

        return self._request(body, parse)

    def _request(self, body: dict, parse: Callable[[dict], object]) -> Answer:
        """POST ``body``, ``parse`` the first choice; retries, refusals and abstentions as :meth:`ask` says."""
        t0 = time.perf_counter()
        kind, reason = "error", ""
        try:
            for attempt in range(self.retries + 1):
                if attempt:
                    self._count(retries=1)
                    time.sleep(self.backoff_s * 2 ** (attempt - 1) * (0.5 + random.random()))  # noqa: S311
                self._count(calls=1)
                try:
                    out = self._post(body)
                    choice = out["choices"][0]
                    parsed = parse(choice)
                except urllib.error.HTTPError as exc:
                    detail = _status_detail(exc)
                    if 400 <= exc.code < 500 and exc.code not in RETRY_STATUS:
                        self._count(refused=1, abstained=1)
                        reason = f"refused: HTTP {exc.code}: {detail}"
                        self._problem(reason)
                        return Answer(None, "refused", reason)
                    self._count(errors=1)
                    kind, reason = "error", f"HTTP {exc.code}: {detail}"
                    self._problem(f"request failed: {reason}")
                    continue
                except _Invalid as exc:
                    self._count(invalid=1)
                    kind, reason = "invalid", str(exc)
                    self._problem(reason)
                    continue
                except (urllib.error.URLError, TimeoutError, OSError, KeyError, IndexError, TypeError,
                        json.JSONDecodeError) as exc:
                    self._count(errors=1)
                    kind, reason = "error", f"request failed: {exc}"
                    self._problem(reason)
                    continue
                if isinstance(parsed, Verdict):
                    return Answer(parsed)
                value, how = parsed  # type: ignore[misc]
                if isinstance(value, str):
                    return Answer(None, how, "", None, value)
                if isinstance(value, dict):
                    return Answer(None, how, "", shares=value)
                return Answer(None, how, "", value)
            self._count(abstained=1)
            return Answer(None, kind, f"{reason} (after {self.retries + 1} attempts)")
        finally:
            self._count(seconds=time.perf_counter() - t0)

    def unfit(self, reason: str) -> Answer:
        """Abstain without a request: the prompt cannot fit the model's context."""
        self._count(unfit=1, abstained=1)
        self._problem(f"unfit: {reason}")
        return Answer(None, "unfit", f"unfit: {reason}")

    def _count(self, **delta: float) -> None:
        with self._lock:
            for k, v in delta.items():
                setattr(self.stats, k, getattr(self.stats, k) + v)

    def _problem(self, msg: str) -> None:
        with self._lock:
            if len(self.stats.problems) < 20:
                self.stats.problems.append(msg)

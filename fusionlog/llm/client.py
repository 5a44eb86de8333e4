"""One client for every OpenAI-compatible chat endpoint (our Ray Serve vLLM app, or any server the user
names): JSON-schema structured output, validation, retries with backoff, a timeout, then abstention.

The model's answer is untrusted data: it is parsed as JSON and validated against :class:`Verdict`; it is
never executed or interpreted further.
"""

from __future__ import annotations

import json
import os
import random
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
    errors: int = 0  # HTTP errors and timeouts
    abstained: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


class ChatClient:
    """POST ``{base_url}/chat/completions``; ``api_key_env`` names the environment variable of the key."""

    def __init__(self, base_url: str, model: str, *, api_key_env: str | None = None, timeout_s: float = 120.0,
                 max_tokens: int = 128, retries: int = 3, backoff_s: float = 1.0, structured: bool = True) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.key = os.environ.get(api_key_env, "") if api_key_env else ""
        if api_key_env and not self.key:
            raise ValueError(f"the LLM API key variable {api_key_env} is not set")
        self.timeout_s, self.max_tokens, self.retries, self.backoff_s = timeout_s, max_tokens, retries, backoff_s
        self.structured = structured
        self.stats = CallStats()

    def _post(self, body: dict) -> dict:
        req = urllib.request.Request(self.url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {self.key}"} if self.key else {})})
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 (URL from config)
            return json.loads(resp.read().decode("utf-8"))

    def verdict(self, messages: list[dict]) -> Verdict | None:
        """A validated verdict, or None (abstain) after ``retries`` failed attempts."""
        body = {"model": self.model, "messages": messages, "max_tokens": self.max_tokens, "temperature": 0.0}
        if self.structured:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "verdict", "schema": SCHEMA, "strict": True}}
        t0 = time.perf_counter()
        try:
            for attempt in range(self.retries + 1):
                if attempt:
                    self.stats.retries += 1
                    time.sleep(self.backoff_s * 2 ** (attempt - 1) * (0.5 + random.random()))  # noqa: S311
                self.stats.calls += 1
                try:
                    out = self._post(body)
                    choice = out["choices"][0]
                    text = choice["message"]["content"] or ""
                except (urllib.error.URLError, TimeoutError, OSError, KeyError, IndexError, TypeError,
                        json.JSONDecodeError) as exc:
                    self.stats.errors += 1
                    self._problem(f"request failed: {exc}")
                    continue
                if choice.get("finish_reason") == "length":
                    self.stats.invalid += 1
                    self._problem(f"answer cut at max_tokens={self.max_tokens}: {text[:120]!r}")
                    continue
                try:
                    return Verdict.model_validate(json.loads(text))
                except (json.JSONDecodeError, ValidationError) as exc:
                    self.stats.invalid += 1
                    self._problem(f"invalid answer ({type(exc).__name__}): {text[:120]!r}")
            self.stats.abstained += 1
            return None
        finally:
            self.stats.seconds += time.perf_counter() - t0

    def _problem(self, msg: str) -> None:
        if len(self.stats.problems) < 20:
            self.stats.problems.append(msg)

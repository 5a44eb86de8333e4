"""Input discovery (files, directories, globs; local paths or filesystem URIs) and split planning."""

from __future__ import annotations

import fnmatch
import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_GLOB = set("*?[")


class InputError(ValueError):
    """An input that cannot be read (named in the message)."""


@dataclass(frozen=True)
class InputFile:
    path: str
    size: int
    gz: bool


@dataclass(frozen=True)
class Split:
    """A byte range of one file. Gzip files are one split; ``prior_newlines`` = line ends before start
    (LF, CRLF, lone CR: see ``count_newlines``). A split of a gzip file decompressed once to spread it over the
    cores reads ``path`` (the plain copy) and names its lines by ``source`` (the gzip file), ``layers`` the
    gzip layers that were decompressed."""

    split_id: int
    path: str
    start: int
    end: int
    gz: bool
    prior_newlines: int = 0
    source: str = ""
    layers: int = 0

    @property
    def name(self) -> str:
        """The input file its lines belong to."""
        return self.source or self.path


def _is_uri(p: str) -> bool:
    return "://" in p and not p.startswith("file://")


def _hidden(name: str) -> bool:
    return name.startswith((".", "_"))


def _local_gz(path: str) -> bool:
    if path.endswith(".gz"):
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(2) == b"\x1f\x8b"
    except OSError:
        return False


def _expand_local(item: str) -> list[InputFile]:
    item = item.removeprefix("file://")
    if any(c in item for c in _GLOB):
        paths = sorted(p for p in glob.glob(item, recursive=True) if os.path.isfile(p))
    elif os.path.isdir(item):
        paths = sorted(
            str(p)
            for p in Path(item).rglob("*")
            if p.is_file() and not any(_hidden(part) for part in p.relative_to(item).parts)
        )
    elif os.path.isfile(item):
        paths = [item]
    else:
        raise InputError(f"input not found: {item}")
    out = []
    for p in paths:
        ap = os.path.abspath(p)
        out.append(InputFile(ap, os.path.getsize(ap), _local_gz(ap)))
    return out


def _expand_uri(item: str) -> list[InputFile]:
    import pyarrow.fs as pafs

    has_glob = any(c in item for c in _GLOB)
    base = item
    if has_glob:
        base = item[: min(item.index(c) for c in _GLOB if c in item)].rsplit("/", 1)[0]
    try:
        fs, root = pafs.FileSystem.from_uri(base)
    except Exception as exc:  # pyarrow raises several types for unknown schemes/credentials
        raise InputError(f"cannot open {item}: {exc}") from exc
    scheme = item.split("://", 1)[0]
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise InputError(f"input not found: {item}")
    if info.type == pafs.FileType.File:
        infos = [info]
    else:
        infos = [
            i
            for i in fs.get_file_info(pafs.FileSelector(root, recursive=True))
            if i.type == pafs.FileType.File and not _hidden(i.base_name)
        ]
    out = []
    for i in sorted(infos, key=lambda x: x.path):
        uri = f"{scheme}://{i.path}"
        if has_glob and not fnmatch.fnmatch(uri, item):
            continue
        out.append(InputFile(uri, i.size or 0, uri.endswith(".gz")))
    return out


def expand_inputs(inputs: list[str]) -> list[InputFile]:
    """All files named by ``inputs`` (files, directories, globs), sorted, without duplicates."""
    if not inputs:
        raise InputError("no input given")
    seen: dict[str, InputFile] = {}
    for item in inputs:
        files = _expand_uri(item) if _is_uri(item) else _expand_local(item)
        if not files:
            raise InputError(f"no file matches {item}")
        for f in files:
            seen.setdefault(f.path, f)
    return sorted(seen.values(), key=lambda f: f.path)


def open_binary(path: str) -> BinaryIO:
    """Open a local path or a filesystem URI for binary reading (seekable)."""
    if not _is_uri(path):
        return open(path.removeprefix("file://"), "rb")  # noqa: SIM115
    import pyarrow.fs as pafs

    fs, p = pafs.FileSystem.from_uri(path)
    return fs.open_input_file(p)  # type: ignore[return-value]


def count_newlines(path: str, start: int, end: int, chunk: int = 1 << 22) -> int:
    """Number of line ends in [start, end): LF, CRLF (at its LF) and a lone CR (not followed by LF).

    A CR at ``end - 1`` followed by an LF at ``end`` is not counted here: that line end is the LF's,
    in the next range (as the reader sees it, ``fusionlog.ingest.read.line_end_from``).
    """
    n = 0
    cr_last = False
    with open_binary(path) as fh:
        fh.seek(start)
        left = end - start
        while left > 0:
            buf = fh.read(min(chunk, left))
            if not buf:
                break
            if cr_last and buf[:1] == b"\n":  # a CRLF across two pieces: its CR was counted
                n -= 1
            n += buf.count(b"\n") + buf.count(b"\r") - buf.count(b"\r\n")
            cr_last = buf.endswith(b"\r")
            left -= len(buf)
        if cr_last and left == 0 and fh.read(1) == b"\n":
            n -= 1
    return n


def plan_splits(files: list[InputFile], split_bytes: int) -> list[Split]:
    """Byte-range splits: plain files larger than ``split_bytes`` are cut; gzip files are whole."""
    splits: list[Split] = []
    for f in files:
        if f.gz or f.size <= split_bytes:
            splits.append(Split(len(splits), f.path, 0, f.size, f.gz))
            continue
        for start in range(0, f.size, split_bytes):
            end = min(start + split_bytes, f.size)
            splits.append(Split(len(splits), f.path, start, end, False))
    return splits


def with_line_bases(splits: list[Split], counts: dict[int, int]) -> list[Split]:
    """Fill ``prior_newlines`` from per-split newline counts (splits of a file are consecutive)."""
    out, run, prev = [], 0, None
    for s in splits:
        if s.path != prev:
            run, prev = 0, s.path
        out.append(Split(s.split_id, s.path, s.start, s.end, s.gz, run, s.source, s.layers))
        run += counts.get(s.split_id, 0)
    return out

"""A persistent cache of verdicts keyed by (model, prompt version, window signature, knowledge-base
version), in SQLite (one file, safe for the threads of one labeling run)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path

from fusionlog.llm.client import Verdict


def signature(template_ids: list[int], mode: str = "ordered") -> str:
    """Windows with the same signature share one LLM call: the template sequence, or its set."""
    ids = sorted(set(template_ids)) if mode == "set" else list(template_ids)
    return hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:32]


class VerdictCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock, self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS verdicts (model TEXT, prompt TEXT, signature TEXT, kb TEXT, "
                             "verdict TEXT, PRIMARY KEY (model, prompt, signature, kb))")

    def get(self, model: str, prompt: str, sig: str, kb: str) -> Verdict | None:
        with self._lock:
            row = self._db.execute("SELECT verdict FROM verdicts WHERE model=? AND prompt=? AND signature=? AND kb=?",
                                   (model, prompt, sig, kb)).fetchone()
        return Verdict.model_validate_json(row[0]) if row else None

    def put(self, model: str, prompt: str, sig: str, kb: str, verdict: Verdict) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?)",
                             (model, prompt, sig, kb, verdict.model_dump_json()))

    def close(self) -> None:
        self._db.close()

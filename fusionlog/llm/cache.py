"""A persistent cache of verdicts keyed by (model, prompt version, window signature, knowledge-base
version), in SQLite (one file, safe for the threads of one labeling run).

Abstentions are remembered too (table ``abstentions``, with their kind and reason), for one *session*: by
default the process that wrote them, i.e. one ``fusionlog run`` (its llm-only pass and every distillation
round). Within it a signature the LLM abstained on is not asked again; a later process asks again (the
endpoint may be back, the configuration fixed). Files written before this table existed gain it on open
(``CREATE TABLE IF NOT EXISTS``: no migration, the ``verdicts`` table is unchanged).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from fusionlog.llm.client import Verdict

# one id per process: the default session of every cache opened in it
SESSION = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"


def signature(template_ids: list[int], mode: str = "ordered") -> str:
    """Windows with the same signature share one LLM call: the template sequence, or its set."""
    ids = sorted(set(template_ids)) if mode == "set" else list(template_ids)
    return hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Abstention:
    kind: str  # refused | error | invalid | unfit
    reason: str


class VerdictCache:
    def __init__(self, path: Path, session: str | None = None) -> None:
        """``session``: abstentions written under another session are not read back (default: this process)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.session = session or SESSION
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        self._lock = threading.Lock()
        with self._lock, self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS verdicts (model TEXT, prompt TEXT, signature TEXT, kb TEXT, "
                             "verdict TEXT, PRIMARY KEY (model, prompt, signature, kb))")
            self._db.execute("CREATE TABLE IF NOT EXISTS abstentions (model TEXT, prompt TEXT, signature TEXT, "
                             "kb TEXT, session TEXT, kind TEXT, reason TEXT, created REAL, "
                             "PRIMARY KEY (model, prompt, signature, kb, session))")

    def get(self, model: str, prompt: str, sig: str, kb: str) -> Verdict | None:
        with self._lock:
            row = self._db.execute("SELECT verdict FROM verdicts WHERE model=? AND prompt=? AND signature=? AND kb=?",
                                   (model, prompt, sig, kb)).fetchone()
        return Verdict.model_validate_json(row[0]) if row else None

    def put(self, model: str, prompt: str, sig: str, kb: str, verdict: Verdict) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?)",
                             (model, prompt, sig, kb, verdict.model_dump_json()))
            self._db.execute("DELETE FROM abstentions WHERE model=? AND prompt=? AND signature=? AND kb=?",
                             (model, prompt, sig, kb))

    def abstention(self, model: str, prompt: str, sig: str, kb: str) -> Abstention | None:
        """This session's remembered abstention on the key, if any."""
        with self._lock:
            row = self._db.execute("SELECT kind, reason FROM abstentions WHERE model=? AND prompt=? AND signature=? "
                                   "AND kb=? AND session=?", (model, prompt, sig, kb, self.session)).fetchone()
        return Abstention(row[0], row[1]) if row else None

    def put_abstention(self, model: str, prompt: str, sig: str, kb: str, kind: str, reason: str) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO abstentions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (model, prompt, sig, kb, self.session, kind, reason[:500], time.time()))

    def close(self) -> None:
        self._db.close()


class ProbabilityCache:
    """Probabilities the LLM gave (:meth:`ChatClient.yes_probability`), keyed by (model, prompt version, item key),
    in the same SQLite file as the verdicts (table ``probabilities``), and its short texts (:meth:`ChatClient.text`,
    table ``texts``). Only answers are stored; abstentions are asked again next time."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        self._lock = threading.Lock()
        with self._lock, self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS probabilities (model TEXT, prompt TEXT, item TEXT, "
                             "value REAL, kind TEXT, PRIMARY KEY (model, prompt, item))")
            self._db.execute("CREATE TABLE IF NOT EXISTS texts (model TEXT, prompt TEXT, item TEXT, text TEXT, "
                             "PRIMARY KEY (model, prompt, item))")

    def get(self, model: str, prompt: str, item: str) -> tuple[float, str] | None:
        with self._lock:
            row = self._db.execute("SELECT value, kind FROM probabilities WHERE model=? AND prompt=? AND item=?",
                                   (model, prompt, item)).fetchone()
        return (float(row[0]), str(row[1])) if row else None

    def put(self, model: str, prompt: str, item: str, value: float, kind: str) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO probabilities VALUES (?, ?, ?, ?, ?)",
                             (model, prompt, item, value, kind))

    def get_text(self, model: str, prompt: str, item: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT text FROM texts WHERE model=? AND prompt=? AND item=?",
                                   (model, prompt, item)).fetchone()
        return str(row[0]) if row else None

    def put_text(self, model: str, prompt: str, item: str, text: str) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO texts VALUES (?, ?, ?, ?)", (model, prompt, item, text))

    def close(self) -> None:
        self._db.close()

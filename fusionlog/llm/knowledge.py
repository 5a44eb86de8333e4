"""The RAG knowledge base: labeled windows (one per distinct signature) with their window vectors, in the
run's LanceDB (table ``knowledge``). A window vector is the normalised mean of its template vectors."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from fusionlog.embed.stage import open_store

TABLE = "knowledge"


def window_vector(vectors: np.ndarray) -> np.ndarray:
    v = vectors.mean(axis=0) if len(vectors) else np.zeros(vectors.shape[1], np.float32)
    n = np.linalg.norm(v)
    return (v / n if n else v).astype(np.float32)


@dataclass
class Example:
    label: str
    window: str  # rendered, as in the prompt
    distance: float


class KnowledgeBase:
    """Add labeled windows; search the k nearest by cosine distance; a version that changes with the content."""

    def __init__(self, run: Path) -> None:
        self.db = open_store(run)

    def add(self, rows: list[dict]) -> None:
        """rows: key (unique, e.g. system:signature), system, label (normal|anomalous), window, origin, vector."""
        if not rows:
            return
        table = pa.table({
            "key": [r["key"] for r in rows], "system": [r["system"] for r in rows],
            "label": [r["label"] for r in rows], "window": [r["window"] for r in rows],
            "origin": [r["origin"] for r in rows],
            "vector": pa.array([np.asarray(r["vector"], np.float32) for r in rows],
                               pa.list_(pa.float32(), len(rows[0]["vector"]))),
        })
        if TABLE in self.db.list_tables().tables:
            tbl = self.db.open_table(TABLE)
            tbl.merge_insert("key").when_matched_update_all().when_not_matched_insert_all().execute(table)
        else:
            self.db.create_table(TABLE, table)

    def reset(self) -> None:
        """Drop every example (a distillation run rebuilds its knowledge base from the labeled sources)."""
        if TABLE in self.db.list_tables().tables:
            self.db.drop_table(TABLE)

    def size(self) -> int:
        return self.db.open_table(TABLE).count_rows() if TABLE in self.db.list_tables().tables else 0

    def version(self) -> str:
        if TABLE not in self.db.list_tables().tables:
            return "empty"
        t = self.db.open_table(TABLE).to_arrow().select(["key", "label"]).sort_by("key")
        text = "\n".join(f"{k}\t{v}" for k, v in zip(t["key"].to_pylist(), t["label"].to_pylist(), strict=True))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def search(self, vector: np.ndarray, k: int, system: str | None = None, balanced: bool = False) -> list[Example]:
        """The ``k`` nearest labeled windows (of ``system`` only, when given); ``balanced``: the k/2 nearest of
        each label (a knowledge base dominated by one label otherwise shows the model mostly that label)."""
        if k <= 0 or TABLE not in self.db.list_tables().tables:
            return []
        if balanced:
            parts = [self._search(vector, k - k // 2, system, "normal"), self._search(vector, k // 2, system,
                                                                                      "anomalous")]
            return sorted([e for part in parts for e in part], key=lambda e: e.distance)
        return self._search(vector, k, system, None)

    def _search(self, vector: np.ndarray, k: int, system: str | None, label: str | None) -> list[Example]:
        if k <= 0:
            return []
        q = self.db.open_table(TABLE).search(np.asarray(vector, np.float32)).metric("cosine")
        where = [f"{col} = '{val.replace(chr(39), chr(39) * 2)}'" for col, val in (("system", system),
                                                                                  ("label", label)) if val]
        if where:
            q = q.where(" AND ".join(where), prefilter=True)
        return [Example(h["label"], h["window"], float(h["_distance"])) for h in q.limit(k).to_list()]


def knn_vote(examples: list[Example]) -> str | None:
    """The majority label of the neighbours (ties: anomalous); None without neighbours."""
    if not examples:
        return None
    anomalous = sum(e.label == "anomalous" for e in examples)
    return "anomalous" if anomalous * 2 >= len(examples) else "normal"


def build_kb(run: Path, system: str, kb: KnowledgeBase, max_chars: int) -> int:
    """Add ``system``'s labeled train windows (one per distinct sequence) to ``kb``; returns how many."""
    from fusionlog.llm.prompt import render_window
    from fusionlog.llm.windows import labeled_items

    items = labeled_items(run, system, "train")
    kb.add([{"key": f"{system}:{it.window.window_id}", "system": system,
             "label": "anomalous" if it.label else "normal", "window": render_window(it.window.templates,
                                                                                     max_chars=max_chars // 4),
             "origin": "labeled", "vector": it.window.vector} for it in items])
    return len(items)


def source_kb(run: Path, sources: list[str], max_chars: int) -> KnowledgeBase:
    """The knowledge base rebuilt from the labeled sources' train splits (nothing distilled yet)."""
    kb = KnowledgeBase(run)
    kb.reset()
    for s in sources:
        build_kb(run, s, kb, max_chars)
    return kb


def distilled_rows(target: str, windows: list, labels: dict[str, int], signature_mode: str,
                   max_chars: int) -> list[dict]:
    """One knowledge-base example per distinct signature of newly kept (pseudo-labeled) target windows."""
    from fusionlog.llm.cache import signature
    from fusionlog.llm.prompt import render_window

    rows: dict[str, dict] = {}
    for w in windows:
        sig = signature(w.template_ids, signature_mode)
        rows.setdefault(sig, {"key": f"{target}:{sig}", "system": target,
                              "label": "anomalous" if labels[w.window_id] else "normal",
                              "window": render_window(w.templates, max_chars=max_chars // 4),
                              "origin": "distilled", "vector": w.vector})
    return list(rows.values())

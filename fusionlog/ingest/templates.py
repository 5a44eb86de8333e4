"""Template mining with Drain3, fed with distinct masked messages; state saved as plain JSON.

Drain3's own persistence serializes with jsonpickle, which can build arbitrary objects on load; a
state file may come from another run or another team, so we store the prefix tree and clusters as
plain JSON instead and rebuild the same ``Drain`` object from it. Template ids are Drain cluster ids,
so ingesting a later month with the saved state keeps the ids of the templates it already knew.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from drain3.drain import Drain, LogCluster, Node

from fusionlog.config import DrainConfig

STATE_VERSION = 1
PARAM = "<*>"


class TemplateMiner:
    """A Drain3 miner over masked messages, with JSON persistence."""

    def __init__(self, cfg: DrainConfig) -> None:
        self.cfg = cfg
        self.drain = Drain(
            depth=cfg.depth,
            sim_th=cfg.sim_th,
            max_children=cfg.max_children,
            max_clusters=cfg.max_clusters,
            parametrize_numeric_tokens=cfg.parametrize_numeric_tokens,
            param_str=PARAM,
        )

    def add(self, masked: str, count: int = 1) -> int:
        """Add one distinct masked message seen ``count`` times; returns its template id."""
        cluster, _ = self.drain.add_log_message(masked)
        cluster.size += count - 1
        return cluster.cluster_id

    def add_all(self, messages: Iterable[tuple[str, int]]) -> dict[str, int]:
        """Add (message, count) pairs in order; returns message -> template id."""
        return {msg: self.add(msg, n) for msg, n in messages}

    def templates(self) -> dict[int, tuple[str, int]]:
        """template id -> (template text, number of lines)."""
        return {c.cluster_id: (c.get_template(), c.size) for c in self.drain.clusters}

    def template_of(self, template_id: int) -> str | None:
        cluster = self.drain.id_to_cluster.get(template_id)
        return cluster.get_template() if cluster else None

    # -- persistence ----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        def node(n: Node) -> dict[str, Any]:
            return {"ids": list(n.cluster_ids), "kids": {k: node(c) for k, c in n.key_to_child_node.items()}}

        return {
            "version": STATE_VERSION,
            "drain": self.cfg.model_dump(),
            "counter": self.drain.clusters_counter,
            "clusters": [[c.cluster_id, list(c.log_template_tokens), c.size] for c in self.drain.clusters],
            "tree": node(self.drain.root_node),
        }

    @classmethod
    def from_json(cls, state: dict[str, Any], cfg: DrainConfig, source: str = "state") -> TemplateMiner:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"{source}: unsupported template state version {state.get('version')!r}")
        if state.get("drain") != cfg.model_dump():
            raise ValueError(
                f"{source}: template state was mined with different Drain settings "
                f"({state.get('drain')} vs {cfg.model_dump()}); ids would not be comparable"
            )
        miner = cls(cfg)
        try:
            for cid, tokens, size in state["clusters"]:
                cluster = LogCluster([str(t) for t in tokens], int(cid))
                cluster.size = int(size)
                miner.drain.id_to_cluster[int(cid)] = cluster

            def build(d: dict[str, Any]) -> Node:
                n = Node()
                n.cluster_ids = [int(i) for i in d["ids"]]
                n.key_to_child_node = {str(k): build(v) for k, v in d["kids"].items()}
                return n

            miner.drain.root_node = build(state["tree"])
            miner.drain.clusters_counter = int(state["counter"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: malformed template state ({exc!r})") from exc
        return miner

    def save(self, path: Path) -> None:
        """Write the state atomically (temp file + rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self.to_json(), fh)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, cfg: DrainConfig) -> TemplateMiner:
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: cannot read template state ({exc})") from exc
        return cls.from_json(state, cfg, source=str(path))

"""What training reads: source windows (labeled, train/val splits) and the target's general windows
(unlabeled: the target's label column is never read), as rows of indices into one template table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fusionlog.embed.stage import TABLE, stored
from fusionlog.model.index import TemplateIndex
from fusionlog.rundir import lancedb_dir, table_dir

SOURCE_COLUMNS = ["window_id", "template_ids", "label", "split", "start_ts", "first_file", "first_line"]


def read_windows(run: Path, system: str, columns: list[str]) -> pa.Table:
    """``windows/system=<system>`` (only ``columns``), in the order (start_ts, first_file, first_line)."""
    wdir = table_dir(run, "windows", system)
    if not wdir.is_dir():
        raise FileNotFoundError(f"{wdir} not found: ingest {system} first")
    order = [c for c in ("start_ts", "first_file", "first_line", "window_id") if c in columns]
    table = pq.read_table(wdir, columns=columns)
    return table.sort_by([(c, "ascending") for c in order]) if order else table


def time_slices(table: pa.Table, k: int) -> np.ndarray:
    """Slice 0..k-1 of each row: by global time rank when rows have timestamps, else by position within
    their file (event-sequence sets have no time, and each file holds one label)."""
    n = table.num_rows
    out = np.zeros(n, np.int16)
    if n == 0:
        return out
    ts = table["start_ts"]
    if ts.null_count == 0:
        return (np.arange(n) * k // n).astype(np.int16)
    files = table["first_file"].to_pylist()
    pos: dict[str, list[int]] = {}
    for i, f in enumerate(files):
        pos.setdefault(f, []).append(i)
    for rows in pos.values():
        m = len(rows)
        out[rows] = (np.arange(m) * k // m).astype(np.int16)
    return out


@dataclass
class Bundle:
    """Everything a training worker needs, small enough for the object store."""

    vectors: np.ndarray  # (templates, dim): rows 1.. of the model's table
    seqs: list[np.ndarray]  # one int32 array of table rows per window
    label: np.ndarray  # int8; -1 for target windows (labels unknown to training)
    part: np.ndarray  # "train" | "val" | "target"
    task: np.ndarray  # int16: meta-learning task of a train row (system, or time slice of one system)
    system: np.ndarray  # source/target system name per row
    notes: list[str] = field(default_factory=list)

    def where(self, part: str) -> np.ndarray:
        return np.flatnonzero(self.part == part)


def template_index(run: Path, systems: list[str], features: list[str] | tuple[str, ...] = ()) -> TemplateIndex:
    """The template table of ``systems``: semantic vectors, then the event ``features`` of each system."""
    from fusionlog.model.features import event_features, width

    store = stored(run)
    if store is None:
        raise FileNotFoundError(f"{lancedb_dir(run)} has no '{TABLE}' table: run `fusionlog embed` first")
    store = store.filter(pc.is_in(store["system"], value_set=pa.array(systems)))
    feats = {s: event_features(run, s, features) for s in set(store["system"].to_pylist())} if features else None
    return TemplateIndex(store, feats, width(features))


def general_window_ids(run: Path, target: str) -> set[str]:
    rdir = table_dir(run, "routes", target)
    if not rdir.is_dir():
        raise FileNotFoundError(f"{rdir} not found: run `fusionlog route` first")
    routes = pq.read_table(rdir, columns=["window_id", "route"])
    return set(routes.filter(pc.equal(routes["route"], "general"))["window_id"].to_pylist())


@dataclass
class Pseudo:
    """Pseudo-labeled target windows (distillation): trained on as one more task, never validated on."""

    system: str
    template_ids: list[list[int]]
    labels: list[int]


def build_bundle(run: Path, sources: list[str], target: str | None, slices: int, max_len: int,
                 max_train_windows: int, min_target: int = 1, pseudo: Pseudo | None = None,
                 align_all: bool = False, features: list[str] | tuple[str, ...] = ()) -> tuple[Bundle, TemplateIndex]:
    """Source train/val windows with labels, and (when ``target`` is given) the target's general windows (all
    of its windows with ``align_all``: the no-router ablation); ``pseudo`` windows join the train part;
    ``features``: the event features beside the template vectors (``model.event_features``)."""
    systems = [*sources, *([target] if target else [])]
    index = template_index(run, systems, features)
    seqs: list[np.ndarray] = []
    cols: dict[str, list] = {"label": [], "part": [], "task": [], "system": []}
    notes: list[str] = []

    def add(system: str, ids: list[list[int]], labels: list[int], part: str, tasks: np.ndarray) -> None:
        rows = index.rows(system, ids, max_len)
        seqs.extend(rows)
        cols["label"].extend(labels)
        cols["part"].extend([part] * len(rows))
        cols["task"].extend(tasks.tolist())
        cols["system"].extend([system] * len(rows))

    for s_no, system in enumerate(sources):
        table = read_windows(run, system, SOURCE_COLUMNS)
        unlabeled = table["label"].null_count
        if unlabeled:
            notes.append(f"{system}: {unlabeled} windows without a label are not used")
            table = table.filter(pc.is_valid(table["label"]))
        for part in ("train", "val"):
            sel = table.filter(pc.equal(table["split"], part))
            if part == "train" and sel.num_rows > max_train_windows:
                notes.append(f"{system}: training on the earliest {max_train_windows} of {sel.num_rows} windows")
                sel = sel.slice(0, max_train_windows)
            labels = sel["label"].to_pylist()
            if part == "train" and (1 not in labels or 0 not in labels):
                raise ValueError(f"source {system}: the train split needs both normal and anomalous windows "
                                 f"(has {labels.count(0)} normal, {labels.count(1)} anomalous)")
            tasks = time_slices(sel, slices) if len(sources) == 1 else np.full(sel.num_rows, s_no, np.int16)
            add(system, sel["template_ids"].to_pylist(), labels, part, tasks)
    if pseudo is not None and pseudo.labels:
        if pseudo.system not in systems:
            raise ValueError(f"pseudo-labeled system {pseudo.system!r} is not among {systems}")
        task = len(sources) if len(sources) > 1 else slices
        add(pseudo.system, pseudo.template_ids, list(pseudo.labels), "train",
            np.full(len(pseudo.labels), task, np.int16))
    if target:
        table = read_windows(run, target, ["window_id", "template_ids"])  # never the label column
        if align_all:
            sel = table
        else:
            general = general_window_ids(run, target)
            sel = table.filter(pc.is_in(table["window_id"], value_set=pa.array(sorted(general), pa.string())))
        if sel.num_rows < min_target:
            notes.append(f"{target}: {sel.num_rows} windows routed general (< {min_target}): no alignment")
            sel = sel.slice(0, 0)
        add(target, sel["template_ids"].to_pylist(), [-1] * sel.num_rows, "target", np.full(sel.num_rows, -1, np.int16))
    bundle = Bundle(index.vectors.numpy(), seqs, np.array(cols["label"], np.int8), np.array(cols["part"]),
                    np.array(cols["task"], np.int16), np.array(cols["system"]), notes)
    return bundle, index

"""``fusionlog embed``: templates/ -> LanceDB table ``templates`` (system, template_id, template, model, vector).

Ray Data reads the ``templates`` Parquet of a run, keeps only templates the store does not hold yet
(new ids, a template whose text changed since, or another model), and encodes them in a pool of
stateful actors (the model loads once per actor). The store is a LanceDB directory in the run.

With ``text: interpretation`` (LEI) the text embedded for an event is the LLM's plain-language interpretation of it
(``interpretations/``, written by the judge stage), its template where it has none; the store's ``template``
column holds the text that was embedded, so a changed interpretation is encoded again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from fusionlog.config import EmbedConfig, load_embed
from fusionlog.embed.encoder import Encoder
from fusionlog.ray_runtime import ResourceWaitError, holders, init_ray, wait_for_resources
from fusionlog.rundir import lancedb_dir, table_dir

TABLE = "templates"


@dataclass
class EmbedResult:
    templates: int
    encoded: int
    dim: int
    seconds: float
    model: str


def store_schema(dim: int) -> pa.Schema:
    return pa.schema([
        ("system", pa.string()), ("template_id", pa.int64()), ("template", pa.string()),
        ("model", pa.string()), ("vector", pa.list_(pa.float32(), dim)),
    ])


def open_store(run: Path):  # noqa: ANN201
    import lancedb

    return lancedb.connect(str(lancedb_dir(run)))


def stored(run: Path) -> pa.Table | None:
    """The LanceDB ``templates`` table as Arrow, or None before the first embed."""
    db = open_store(run)
    return db.open_table(TABLE).to_arrow() if TABLE in db.list_tables().tables else None


def _key(system: str, tid: int, template: str, model: str) -> str:
    return f"{system}\x00{tid}\x00{template}\x00{model}"


def _interpreted(run: Path, src: pa.Table) -> pa.Table:
    """``src`` with each template's text replaced by the event's interpretation (none: the template)."""
    from fusionlog.llm.interpret import read_interpretations

    text = {s: read_interpretations(run, s) for s in sorted(set(src["system"].to_pylist()))}
    new = [text[s].get(t) or x for s, t, x in zip(src["system"].to_pylist(), src["template_id"].to_pylist(),
                                                   src["template"].to_pylist(), strict=True)]
    return src.set_column(src.schema.get_field_index("template"), "template", pa.array(new, pa.string()))


def embed(run: Path, cfg: EmbedConfig | None = None) -> EmbedResult:
    """Encode the templates of ``run`` that the store does not hold yet."""
    import ray

    cfg = cfg or load_embed()
    run = Path(run)
    if not table_dir(run, "templates").is_dir():
        raise FileNotFoundError(f"{table_dir(run, 'templates')} not found: run `fusionlog ingest` first")
    t0 = time.perf_counter()
    init_ray()
    old = stored(run)
    known = set()
    if old is not None:
        cols = [old[c].to_pylist() for c in ("system", "template_id", "template", "model")]
        known = {_key(*row) for row in zip(*cols, strict=True)}
    model = cfg.model

    what = f"embed ({cfg.actors} encoder actor(s) of {cfg.cpus_per_actor} CPU)"
    # the templates are read here, not by Ray Data read tasks (1 CPU each by default, which wait forever beside an
    # LLM replica holding the other core): the actor pool is all that needs the cluster
    import pyarrow.dataset as pads

    src = pads.dataset(str(table_dir(run, "templates")), format="parquet", partitioning="hive").to_table(
        columns=["system", "template_id", "template"])
    src = src.set_column(0, "system", src["system"].cast(pa.string()))
    if cfg.text == "interpretation":
        src = _interpreted(run, src)
    total = src.num_rows
    keep = [_key(s, t, x, model) not in known for s, t, x in zip(src["system"].to_pylist(),
                                                                  src["template_id"].to_pylist(),
                                                                  src["template"].to_pylist(), strict=True)]
    todo_rows = src.filter(pa.array(keep, pa.bool_()))
    parts: list[dict] = []
    if todo_rows.num_rows:
        wait_for_resources({"CPU": cfg.actors * cfg.cpus_per_actor}, what, cfg.actor_wait_s)
        ray.data.DataContext.get_current().wait_for_min_actors_s = cfg.actor_wait_s  # Ray Data's own deadline
        todo = ray.data.from_arrow(todo_rows).map_batches(
            Encoder,
            fn_constructor_args=(model, cfg.normalize, cfg.threads_per_actor),
            batch_size=cfg.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=cfg.actors),
            num_cpus=cfg.cpus_per_actor,
        )
        try:
            parts = list(todo.iter_batches(batch_format="numpy", batch_size=None))
        except ray.exceptions.GetTimeoutError as exc:
            raise ResourceWaitError(f"{what}: the actors did not start within {cfg.actor_wait_s} s:\n  "
                                    f"{holders()}") from exc
    encoded = sum(len(p["template_id"]) for p in parts)
    dim = int(parts[0]["vector"].shape[1]) if parts else (old.schema.field("vector").type.list_size if old else 0)
    if encoded:
        vec = np.concatenate([p["vector"] for p in parts]).astype(np.float32)
        new = pa.table(
            {
                "system": pa.array(np.concatenate([p["system"] for p in parts]).tolist(), pa.string()),
                "template_id": pa.array(np.concatenate([p["template_id"] for p in parts]), pa.int64()),
                "template": pa.array(np.concatenate([p["template"] for p in parts]).tolist(), pa.string()),
                "model": pa.array([model] * encoded, pa.string()),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vec.ravel()), dim),
            },
            schema=store_schema(dim),
        )
        db = open_store(run)
        if old is None:
            db.create_table(TABLE, new)
        elif old.schema.field("vector").type.list_size != dim:
            db.drop_table(TABLE)  # another model with another width: the store starts over
            db.create_table(TABLE, new)
        else:
            (db.open_table(TABLE).merge_insert(["system", "template_id"])
             .when_matched_update_all().when_not_matched_insert_all().execute(new))
    return EmbedResult(total, encoded, dim, time.perf_counter() - t0, model)

"""Embedding on a local Ray: only templates the LanceDB store lacks are encoded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fusionlog.config import EmbedConfig
from fusionlog.embed.stage import embed, stored
from fusionlog.ingest.sequences import ingest_sequences, parse_spec


def test_embed_is_incremental(ray_local, data: Path, tmp_path: Path) -> None:
    ingest_sequences("HDFS", data / "HDFS/HDFS_templates.csv", [parse_spec(f"{data}/HDFS/hdfs_train.gz:normal")],
                     tmp_path)
    ingest_sequences("OpenStack", data / "OpenStack/OpenStack_templates.csv",
                     [parse_spec(f"{data}/OpenStack/openstack_train.gz:normal")], tmp_path)
    cfg = EmbedConfig(actors=1, cpus_per_actor=0.5)
    r = embed(tmp_path, cfg)
    assert (r.templates, r.encoded, r.dim) == (33 + 92, 33 + 92, 384)
    t = stored(tmp_path)
    vec = np.stack(t["vector"].to_numpy(zero_copy_only=False))
    assert np.allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-4)
    # semantics: two different block-receipt templates are closer than a block receipt and a VM claim
    texts = t["template"].to_pylist()
    i = texts.index("<*>Receiving block<*>src:<*>dest:<*>")
    j = texts.index("<*>Received block<*>of size<*>from<*>")
    k = next(n for n, x in enumerate(texts) if "Attempting claim" in x)
    assert vec[i] @ vec[j] > vec[i] @ vec[k] + 0.2
    assert embed(tmp_path, cfg).encoded == 0  # nothing new
    # one template's text changes (a later month generalized it): only that one is encoded again
    part = tmp_path / "templates/system=HDFS/part-0.parquet"
    tpl = pq.read_table(part).to_pydict()
    tpl["template"][0] = "a brand new template text <*>"
    pq.write_table(pa.table(tpl, schema=pq.read_schema(part)), part)
    assert embed(tmp_path, cfg).encoded == 1
    after = stored(tmp_path)
    assert after.num_rows == 125 and "a brand new template text <*>" in after["template"].to_pylist()


def test_missing_model_and_run_are_clear(tmp_path: Path) -> None:
    from fusionlog.embed.encoder import model_path

    with pytest.raises(FileNotFoundError, match="never downloaded"):
        model_path("sentence-transformers/some-hub-model")
    with pytest.raises(FileNotFoundError, match="run `fusionlog ingest` first"):
        embed(tmp_path, EmbedConfig())


def test_embedding_can_read_the_events_interpretations(ray_local, data: Path, tmp_path: Path) -> None:
    """``text: interpretation`` (LEI): an event is embedded from the LLM's interpretation (interpretations/, the judge
    stage's), its template where it has none; a changed interpretation is encoded again."""
    from fusionlog.llm.interpret import INTERPRETATIONS, write_interpretations

    ingest_sequences("HDFS", data / "HDFS/HDFS_templates.csv", [parse_spec(f"{data}/HDFS/hdfs_train.gz:normal")],
                     tmp_path)
    tpl = pq.read_table(tmp_path / "templates/system=HDFS").to_pydict()
    ids = tpl["template_id"]
    said = {ids[0]: "A data node received a block from another node.", ids[1]: "A block was deleted."}
    write_interpretations(tmp_path, "HDFS", pa.table({"template_id": ids, "interpretation": [said.get(i) for i in ids]},
                                                      schema=INTERPRETATIONS))
    cfg = EmbedConfig(actors=1, cpus_per_actor=0.5, text="interpretation")
    assert embed(tmp_path, cfg).encoded == len(ids)
    text = dict(zip(stored(tmp_path)["template_id"].to_pylist(), stored(tmp_path)["template"].to_pylist(),
                    strict=True))
    assert text[ids[0]] == said[ids[0]] and text[ids[1]] == said[ids[1]]
    assert text[ids[2]] == tpl["template"][2]  # no interpretation: its template
    said[ids[1]] = "A block was removed from a data node."
    write_interpretations(tmp_path, "HDFS", pa.table({"template_id": ids, "interpretation": [said.get(i) for i in ids]},
                                                      schema=INTERPRETATIONS))
    assert embed(tmp_path, cfg).encoded == 1
    ingest_sequences("OpenStack", data / "OpenStack/OpenStack_templates.csv",
                     [parse_spec(f"{data}/OpenStack/openstack_train.gz:normal")], tmp_path)
    with pytest.raises(FileNotFoundError, match="system=OpenStack not found: run the judge stage"):
        embed(tmp_path, cfg)  # a system never interpreted: said, not embedded from its templates silently

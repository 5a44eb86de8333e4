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

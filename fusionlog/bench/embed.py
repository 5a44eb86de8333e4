"""``fusionlog bench embed``: the Ray Data embed stage vs a plain ``SentenceTransformer.encode`` loop.

Both encode the same real templates: the ground-truth templates of the 16 loghub 2k samples plus the
HDFS and OpenStack sequence templates shipped in ``data/`` (about 1,400).
"""

from __future__ import annotations

import gzip
import io
import json
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from fusionlog import contracts
from fusionlog.config import EmbedConfig
from fusionlog.rundir import table_dir

console = Console(width=140)
DATA = Path(__file__).resolve().parents[2] / "data"


def real_templates(data: Path = DATA) -> dict[str, list[str]]:
    """system -> its distinct real templates, from the shipped ground truth."""
    out: dict[str, list[str]] = {}
    for f in sorted((data / "loghub_2k").glob("*/*_structured_corrected.csv.gz")):
        df = pd.read_csv(io.BytesIO(gzip.decompress(f.read_bytes())))
        out[f.parent.name] = sorted(set(df["EventTemplate"].astype(str)))
    sequences = (("HDFS_seq", "HDFS/HDFS_templates.csv"), ("OpenStack_seq", "OpenStack/OpenStack_templates.csv"))
    for system, name in sequences:
        out[system] = [t for t in (data / name).read_text(encoding="utf-8").splitlines() if t.strip()]
    return out


def run(
    actors: list[int] | None = None, out: Path | None = None, batch_size: int = 128, threads: int = 1
) -> list[dict]:
    """Measure templates/s of both ways on the same templates; print a table, optionally write JSON."""
    from fusionlog.embed.encoder import load_encoder
    from fusionlog.embed.stage import embed
    from fusionlog.ray_runtime import init_ray

    templates = real_templates()
    flat = [t for ts in templates.values() for t in ts]
    rows = []
    t0 = time.perf_counter()
    model = load_encoder(EmbedConfig().model)
    load_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    for i in range(0, len(flat), batch_size):
        model.encode(flat[i : i + batch_size], normalize_embeddings=True, show_progress_bar=False)
    loop_s = time.perf_counter() - t1
    rows.append({"way": f"plain encode loop (batches of {batch_size})", "templates": len(flat),
                 "seconds": loop_s, "templates_per_s": len(flat) / loop_s, "setup_s": load_s})
    t2 = time.perf_counter()
    init_ray()
    ray_init_s = time.perf_counter() - t2
    for n in actors or [1]:
        with tempfile.TemporaryDirectory() as run_dir:
            for system, ts in templates.items():
                d = table_dir(Path(run_dir), "templates", system)
                d.mkdir(parents=True)
                pq.write_table(pa.table({"template_id": list(range(1, len(ts) + 1)), "template": ts,
                                         "count": [1] * len(ts)}, schema=contracts.TEMPLATES), d / "part-0.parquet")
            cfg = EmbedConfig(actors=n, cpus_per_actor=0.5, batch_size=batch_size, threads_per_actor=threads)
            r = embed(Path(run_dir), cfg)
            rows.append({"way": f"Ray Data actor pool ({n} actor(s), 0.5 CPU, {threads} thread(s) each) -> LanceDB",
                         "templates": r.encoded, "seconds": r.seconds, "templates_per_s": r.encoded / r.seconds,
                         "setup_s": ray_init_s})
    t = Table(title="embedding real templates (all-MiniLM-L6-v2, CPU)")
    for c in ("way", "templates", "seconds", "templates/s", "one-off set-up (s)"):
        t.add_column(c, justify="left" if c == "way" else "right")
    for r in rows:
        t.add_row(r["way"], str(r["templates"]), f"{r['seconds']:.1f}", f"{r['templates_per_s']:.0f}",
                  f"{r['setup_s']:.1f}")
    console.print(t)
    console.print("Ray Data's time includes reading Parquet, the store lookup, actor start-up and the LanceDB write.")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rows, indent=2))
    return rows

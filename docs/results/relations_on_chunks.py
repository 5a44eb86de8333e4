"""Invariant Mining's relations on N-line chunks of contiguous loghub 2k samples (no labels): what share of windows
would a broken relation flag where windows cut the log by lines? For docs/pipeline.md ("Measured (2026-12-05,
fourth session)"); no labels read.

    python docs/results/relations_on_chunks.py 10 Thunderbird Zookeeper ...   # N = lines per window, then systems
"""

import sys
import tempfile
from pathlib import Path

import numpy as np

from fusionlog.config import WindowPolicy, load_system
from fusionlog.ingest.stage import ingest
from fusionlog.methods.invariants import breaks, mine_invariants
from fusionlog.train.data import read_windows

size = int(sys.argv[1])
for system in sys.argv[2:]:
    cfg = load_system(system)
    chunk = WindowPolicy(kind="fixed", size=size, step=size)
    cfg = cfg.model_copy(update={"windows": {**cfg.windows, "chunk": chunk}})
    with tempfile.TemporaryDirectory() as tmp:
        ingest(cfg, [f"data/loghub_2k/{system}/{system}_2k.log.gz"], Path(tmp), window="chunk")
        ids = read_windows(Path(tmp), system, ["template_ids"])["template_ids"].to_pylist()
    inv = mine_invariants(ids)
    b = breaks(ids, inv)
    rel = [i for i in inv if len(i.events) > 1]
    print(f"{system}: {len(ids)} windows (median {np.median([len(x) for x in ids]):.0f} events), {len(rel)} "
          f"relations, relation broken in {b.relation.sum()} ({b.relation.mean():.1%}), any invariant "
          f"{np.mean(b.count > 0):.1%}", flush=True)

"""How close each target event is to its nearest labeled source event (the sentence encoder's cosine): what an
event-level retrieval of source examples (the paper's RAG, per event) would show the LLM. Reads a finished run's
``events/`` tables; no label is read.

    python docs/results/nearest_source_events.py runs/results/hdfs_openstack_to_bgl BGL HDFS OpenStack
"""

import sys

import numpy as np

from fusionlog.embed.encoder import load_encoder
from fusionlog.events import read_events

run, target, *sources = sys.argv[1:]
enc = load_encoder("all-MiniLM-L6-v2")
text = {s: read_events(run, s)["template"].to_pylist() for s in (target, *sources)}
vec = {s: enc.encode(t, normalize_embeddings=True, show_progress_bar=False) for s, t in text.items()}
names = [t for s in sources for t in text[s]]
sim = vec[target] @ np.vstack([vec[s] for s in sources]).T
best = sim.max(axis=1)
q = np.quantile(best, [0.1, 0.25, 0.5, 0.75, 0.9])
print(f"{target} ({len(best)} events) -> {', '.join(sources)} ({len(names)} events): nearest cosine, "
      "quantiles 10/25/50/75/90 %: " + " / ".join(f"{x:.2f}" for x in q))
for i in [*np.argsort(-best)[:5], *np.argsort(best)[:3]]:
    print(f"  {best[i]:.2f}  {text[target][i][:60]!r}  <->  {names[int(sim[i].argmax())][:60]!r}")

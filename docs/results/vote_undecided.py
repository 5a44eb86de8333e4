"""The vote (``fusionlog-vote``) and the LLM's event view on each system of a LOSO fold's run directory, with and
without the undecided rule of the triage (a share within 0.01 of even odds lowers nothing): evaluation only, from
the run's views and cached answers (nothing is asked).

    python docs/results/vote_undecided.py runs/loso/dev-HDFS [dev]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

import fusionlog.llm.triage as triage
from fusionlog.config import load_devset
from fusionlog.methods import Artifacts, get
from fusionlog.train.data import read_windows


def main(run: Path, devset: str = "dev") -> None:
    dev = load_devset(devset)
    exp = dev.fold(next(iter(dev.datasets)))
    for undecided in (triage.UNDECIDED, 0.0):
        triage.UNDECIDED = undecided
        for system in dev.datasets:
            t = read_windows(run, system, ["window_id", "label"])
            ids = sorted(t["window_id"].to_pylist())
            lab = dict(zip(t["window_id"].to_pylist(), t["label"].to_pylist(), strict=True))
            y = np.array([lab[i] for i in ids])
            art = Artifacts(run=run, exp=exp.model_copy(update={"target": system}), ids=ids,
                            routes=dict.fromkeys(ids, "general"), threshold=0.5, models={}, rounds=0,
                            small=lambda _d: {}, llm=lambda _p: {})
            _, d = get("fusionlog-vote").decide(art)  # type: ignore[attr-defined]
            llm = art.scores("llm-events")["label"].to_numpy()
            print(f"undecided within {undecided}: {system}: vote F1 {f1_score(y, d.label):.3f}, "
                  f"llm-events F1 {f1_score(y, llm):.3f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), *(sys.argv[2:3]))

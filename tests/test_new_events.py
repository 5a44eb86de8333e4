"""The ``new-events`` baseline on real BGL_2k lines (time-ordered) and on an event-sequence set (no time)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fusionlog.methods import Artifacts, get


def artifacts(run: Path, system: str, experiment: str) -> Artifacts:
    from fusionlog.config import load_experiment
    from fusionlog.train.data import read_windows

    ids = read_windows(run, system, ["window_id"])["window_id"].to_pylist()
    return Artifacts(run=run, exp=load_experiment(experiment), ids=ids, routes=dict.fromkeys(ids, "general"),
                     threshold=0.5, models={}, rounds=0, small=lambda _d: {}, llm=lambda _p: {})


@pytest.fixture(scope="module")
def bgl_run(spark, data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fusionlog.ingest.stage import ingest

    run = tmp_path_factory.mktemp("new_events")
    ingest("BGL", [str(data / "loghub_2k/BGL/BGL_2k.log.gz")], run, window="line", spark=spark)
    return run


def test_new_events_are_those_the_earliest_majority_never_logs(bgl_run: Path) -> None:
    from fusionlog.train.data import read_windows

    art = artifacts(bgl_run, "BGL", "hdfs_to_bgl")
    t = get("new-events").score(art).to_pandas().set_index("window_id")
    w = read_windows(bgl_run, "BGL", ["window_id", "start_ts", "template_ids"]).to_pandas().set_index("window_id")
    w = w.loc[art.ids]
    w["tid"] = w["template_ids"].map(lambda x: x[0])
    order = w.sort_values(["start_ts"], kind="stable").index  # BGL_2k is time-sorted: ties keep the id order
    majority, rest = order[: len(order) // 2 + 1], order[len(order) // 2 + 1:]
    seen = set(w.loc[majority, "tid"])
    expected = {i for i in rest if w.at[i, "tid"] not in seen}
    flagged = set(t.index[t["label"] == 1])
    assert flagged == expected and 0 < len(flagged) < len(rest)  # only after the majority, only unseen events
    assert (t.loc[list(flagged), "score"] == 1.0).all() and (t.loc[t["label"] == 0, "score"] < 1.0).all()
    assert art.notes["new-events"]["flagged"] == len(flagged) == int(t["label"].sum())
    assert art.notes["new-events"]["new_events"] == len({w.at[i, "tid"] for i in flagged})
    # among the windows not flagged, the rarer their event was in the majority, the higher they score
    common, rare = w.loc[majority, "tid"].value_counts().index[[0, -1]]
    assert t.loc[w.index[w["tid"] == rare], "score"].min() > t.loc[w.index[w["tid"] == common], "score"].max()


def test_no_time_no_new_events(hdfs_natural_run: Path) -> None:
    """An event-sequence set has no time: its ingest order could follow the labels (normal files first)."""
    art = artifacts(hdfs_natural_run, "HDFS", "openstack_to_hdfs")
    t = get("new-events").score(art)
    assert not np.any(t["label"].to_numpy()) and "no time" in art.notes["new-events"]["why"]

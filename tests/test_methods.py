"""The method registry's artifacts: a method's scores are computed once per run and shared by the methods that
read them (the fusion's views are also baselines, and the distilled model's cut reads the fusion's decision)."""

from __future__ import annotations

from pathlib import Path

from fusionlog.config import load_experiment
from fusionlog.methods import Artifacts, names


def test_scores_are_computed_once_and_shared(tmp_path: Path) -> None:
    ids = ["w1", "w2", "w3"]
    art = Artifacts(run=tmp_path, exp=load_experiment("hdfs_to_bgl"), ids=ids, routes=dict.fromkeys(ids, "general"),
                    threshold=0.5, models={}, rounds=0, small=lambda _d: {}, llm=lambda _p: {})
    first = art.scores("all-anomalous")
    assert first["label"].to_pylist() == [1, 1, 1] and first["window_id"].to_pylist() == ids
    assert art.scores("all-anomalous") is first  # not scored again
    assert "all-anomalous" in names()


def test_severity_top_cuts_at_the_most_severe_level_the_system_uses() -> None:
    from fusionlog.methods.severity import SCORE, severity_scores, top_level_cut

    ids = [[1], [2], [1, 3], [3]]
    fatal = {1: "info", 2: "fatal", 3: "error"}
    worst_error = {1: "info", 2: "warn", 3: "error"}
    s = severity_scores(ids, fatal)
    assert (s >= top_level_cut(fatal)).tolist() == [False, True, False, False]  # "Level is FATAL"
    assert (s >= SCORE["error"]).tolist() == [False, True, True, True]  # severity's own cut: error or worse
    assert (severity_scores(ids, worst_error) >= top_level_cut(worst_error)).tolist() == [False, False, True, True]
    for quiet in ("unknown", "info"):  # without levels, or with nothing worse than info: nothing flagged
        lv = dict.fromkeys((1, 2, 3), quiet)
        assert not (severity_scores(ids, lv) >= top_level_cut(lv)).any()

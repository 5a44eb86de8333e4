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
    calls = []
    assert art.cached("k", lambda: calls.append(1) or "v") == "v" and art.cached("k", lambda: calls.append(1)) == "v"
    assert calls == [1]  # computed once per run
    assert "all-anomalous" in names()


def test_severity_top_cuts_at_the_most_severe_level_the_system_uses() -> None:
    from fusionlog.methods.severity import SCORE, severity_scores, top_level_cut

    fatal = [["INFO"], ["FATAL"], ["INFO", "ERROR"], ["SEVERE"]]
    worst_error = [["INFO"], ["WARNING"], ["INFO", "ERROR"], ["ERROR"]]
    s = severity_scores(fatal)
    assert (s >= top_level_cut(s)).tolist() == [False, True, False, False]  # "Level is FATAL"
    assert (s >= SCORE["error"]).tolist() == [False, True, True, True]  # severity's own cut: error or worse
    s = severity_scores(worst_error)
    assert (s >= top_level_cut(s)).tolist() == [False, False, True, True]
    for quiet in (None, "INFO"):  # without levels, or with nothing worse than info: nothing flagged
        s = severity_scores([[quiet], [quiet, quiet], None])
        assert not (s >= top_level_cut(s)).any()


def test_severity_reads_each_lines_level_through_the_systems_map() -> None:
    """A window is as severe as its most severe line, each level as the line says (not its event's usual level),
    spelled as the system spells it."""
    from fusionlog.methods.severity import SCORE, severity_scores

    s = severity_scores([["I", "I", "E"], ["I"], [], ["CRIT", None]])
    assert s.tolist() == [SCORE["error"], SCORE["info"], SCORE["unknown"], SCORE["fatal"]]
    assert severity_scores([["Sev2"], ["sev5"]], {"Sev2": "error", "SEV5": "info"}).tolist() == \
        [SCORE["error"], SCORE["info"]]


def test_severity_says_when_windows_predate_line_levels(tmp_path: Path) -> None:
    """A run directory ingested before windows kept each line's level gets a message naming it and the fix."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import pytest

    from fusionlog.methods.severity import window_levels
    from fusionlog.rundir import table_dir

    d = table_dir(tmp_path, "windows", "BGL")
    d.mkdir(parents=True)
    pq.write_table(pa.table({"window_id": ["w1"], "template_ids": [[1]]}), d / "part-0.parquet")
    art = Artifacts(run=tmp_path, exp=load_experiment("hdfs_to_bgl"), ids=["w1"], routes={"w1": "general"},
                    threshold=0.5, models={}, rounds=0, small=lambda _d: {}, llm=lambda _p: {})
    with pytest.raises(ValueError, match="before windows kept each line's level.*--from ingest"):
        window_levels(art)

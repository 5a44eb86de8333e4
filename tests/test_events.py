"""``events/`` on real BGL_2k lines: per-template counts reconcile with the lines, levels are normalised, document
frequency is over the windows; the severity baseline reads it (labels are read here only to check the baseline)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from fusionlog.events import build_events, normalize_level, read_events, write_events
from fusionlog.methods import get
from fusionlog.methods.severity import severity_scores
from fusionlog.train.data import read_windows


@pytest.fixture(scope="module")
def bgl(spark, data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fusionlog.ingest.stage import ingest

    run = tmp_path_factory.mktemp("events") / "run"
    ingest("BGL", [str(data / "loghub_2k/BGL/BGL_2k.log.gz")], run, window="line", spark=spark)
    write_events(run, "BGL", {})
    return run


def test_levels_are_normalised_with_a_systems_map() -> None:
    assert [normalize_level(x) for x in ("FATAL", "SEVERE", "Warning", "INFO", "dbg", None)] == \
        ["fatal", "error", "warn", "info", "unknown", "unknown"]
    assert normalize_level("dbg", {"DBG": "debug"}) == "debug" and normalize_level("FAILURE") == "fatal"
    # Android logcat's and glog's one-letter levels, the most severe included
    assert [normalize_level(x) for x in "VDIWEFA"] == ["debug", "debug", "info", "warn", "error", "fatal", "fatal"]
    assert [normalize_level(x) for x in ("Informational", "Note", "DPANIC")] == ["info", "info", "fatal"]


def test_events_reconcile_with_lines_and_windows(bgl: Path) -> None:
    ev = read_events(bgl, "BGL").to_pandas()
    lines = pq.read_table(bgl / "lines" / "system=BGL", columns=["template_id", "level"]).to_pandas()
    assert ev["count"].sum() == len(lines) == 2000 and ev["template_id"].is_unique
    assert (ev["windows"] <= ev["count"]).all() and ev["df"].between(0, 1).all() and (ev["df"] > 0).all()
    mixes = [json.loads(m) for m in ev["level_mix"]]
    assert sum(sum(m.values()) for m in mixes) == 2000
    assert {lv for m in mixes for lv in m} <= {"fatal", "error", "warn", "info", "debug", "unknown"}
    raw = lines.groupby("template_id")["level"].agg(lambda s: s.value_counts().index[0])
    assert all(normalize_level(raw[t]) == lv for t, lv in zip(ev["template_id"], ev["level"], strict=True))


def test_severity_baseline_ranks_bgl_alerts_without_labels(bgl: Path) -> None:
    from fusionlog.evaluate.metrics import binary_metrics

    assert get("severity").baseline
    w = read_windows(bgl, "BGL", ["levels", "label"])
    lines = pq.read_table(bgl / "lines" / "system=BGL", columns=["level"])
    assert sorted(x for lv in w["levels"].to_pylist() for x in lv) == sorted(lines["level"].to_pylist())
    s = severity_scores(w["levels"])
    y = np.array(w["label"].to_pylist())
    m, flag_all = binary_metrics(y, s, 0.5), binary_metrics(y, np.ones(len(y)), 0.5)
    assert m["recall"] > 0.9 and m["f1"] > flag_all["f1"] + 0.2, (m, flag_all)  # every BGL alert is FATAL
    # "Level is FATAL", read per line: the rule (347 lines: the 143 alerts and 204 others), F1 0.58
    top = binary_metrics(y, (s >= 1.0).astype(float), 0.5)
    assert (top["tp"], top["fp"], top["fn"]) == (143, 204, 0)


def test_sequence_sets_have_unknown_levels(data: Path, tmp_path: Path) -> None:
    from fusionlog.ingest.sequences import ingest_sequences, parse_spec

    ingest_sequences("HDFS", data / "HDFS/HDFS_templates.csv", [parse_spec(f"{data}/HDFS/hdfs_train.gz:normal")],
                     tmp_path)
    ev = build_events(tmp_path, "HDFS").to_pandas()
    assert set(ev["level"]) == {"unknown"} and ev["first_file"].isna().all() and ev["count"].sum() > 0
    w = read_windows(tmp_path, "HDFS", ["levels"])
    assert w["levels"].null_count == w.num_rows and not severity_scores(w["levels"]).any()


def test_event_features_mean_the_same_on_every_system(bgl: Path, data: Path, tmp_path: Path) -> None:
    """Severity on one scale where levels are logged (none where not), rarity from the system's own windows; the
    LLM feature needs the judge's scores and says how to get them."""
    from fusionlog.ingest.sequences import ingest_sequences, parse_spec
    from fusionlog.methods.severity import SCORE
    from fusionlog.model.features import event_features

    ev = read_events(bgl, "BGL").to_pandas().set_index("template_id")
    f = event_features(bgl, "BGL", ["rarity", "severity"])  # columns in a fixed order: severity, logged, rarity
    assert set(f) == set(ev.index) and all(v.shape == (3,) for v in f.values())
    assert all(f[t][0] == SCORE[ev.loc[t, "level"]] and f[t][1] == 1.0 for t in f)
    rare = {t: v[2] for t, v in f.items()}
    assert all(0.0 <= r <= 1.0 for r in rare.values())
    once, most = ev["windows"].idxmin(), ev["windows"].idxmax()
    assert rare[once] == 1.0 and rare[most] == min(rare.values()) and rare[most] < 0.5
    with pytest.raises(FileNotFoundError, match="BGL's events were not judged.*--until judge"):
        event_features(bgl, "BGL", ["llm"])
    ingest_sequences("HDFS", data / "HDFS/HDFS_templates.csv", [parse_spec(f"{data}/HDFS/hdfs_train.gz:normal")],
                     tmp_path)
    write_events(tmp_path, "HDFS")
    seq = event_features(tmp_path, "HDFS", ["severity"])
    assert all(v.tolist() == [0.0, 0.0] for v in seq.values())  # no levels logged: severity says nothing


def test_severity_is_learned_only_from_levelled_labels_for_a_levelled_target() -> None:
    """A feature constant in training (no labeled system logs levels) or absent on the target (it logs none) is
    left out of the model, with a note saying which system lacks levels."""
    from fusionlog.model.features import learnable

    names = ["severity", "rarity", "llm"]
    assert learnable(names, {"BGL": True}, {"Thunderbird": True}) == (names, [])
    kept, notes = learnable(names, {"HDFS": False, "OpenStack": False}, {"BGL": True})
    assert kept == ["rarity", "llm"] and "HDFS, OpenStack" in notes[0] and "learns labels" in notes[0]
    kept, notes = learnable(names, {"BGL": True}, {"HDFS": False})
    assert kept == ["rarity", "llm"] and "target (HDFS) logs no levels" in notes[0]
    assert learnable(["rarity"], {"HDFS": False}, {"BGL": True}) == (["rarity"], [])

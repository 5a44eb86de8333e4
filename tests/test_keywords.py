"""The ``keywords`` baseline (severity's rule read from the message's words) and where it votes in the fusion: on
real BGL_2k lines, read with their level field and without it (labels are read here only to check the baseline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from fusionlog.methods import Artifacts, get
from fusionlog.methods.keywords import WORDS, keyword_scores, word_level
from fusionlog.methods.severity import SCORE


def test_words_name_a_level_as_whole_words_only() -> None:
    assert [word_level(t) for t in ("rts panic! - stopping execution", "data TLB error interrupt",
                                    "Connection timed  out", "Failed password for root", "warning for torus z+ wire",
                                    "Got assigned task <*>")] == ["fatal", "error", "error", "error", "warn", "info"]
    # identifiers and longer words are not the words: no match inside them
    for text in ("Node card status: no ALERTs are active", "PGOOD IS NOT ASSERTED", "sendSyncFailedBroadcast",
                 "errorCode = <NUM>", "[HRESULT = <HEX> - CBS_E_MANIFEST_INVALID_ITEM]", "terrors of failover"):
        assert word_level(text) == "info", text
    assert word_level("Panic: FAILED with an error") == "fatal"  # the most severe word wins, in any case
    # the level names are the multi-letter spellings severity reads from a level field
    from fusionlog.events import DEFAULT_LEVELS

    named = {w for ws in WORDS.values() for w in ws}
    assert {k for k, v in DEFAULT_LEVELS.items() if len(k) > 1 and v in WORDS} <= named


def test_windows_take_their_most_severe_event() -> None:
    templates = {1: "block received", 2: "write failed", 3: "kernel panic"}
    s = keyword_scores([[1], [1, 2], [2, 3, 1], [], [9]], templates)
    assert s.tolist() == [SCORE["info"], SCORE["error"], SCORE["fatal"], SCORE["info"], SCORE["info"]]


@pytest.fixture(scope="module")
def bgl_runs(spark, data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """BGL_2k in line windows, ingested twice: as shipped, and with its level field not read."""
    from fusionlog.config import load_system
    from fusionlog.events import write_events
    from fusionlog.ingest.stage import ingest

    base = load_system("BGL")
    runs = {}
    for name, system in (("levels", base),
                         ("no-levels", base.model_copy(update={"fields": {k: v for k, v in base.fields.items()
                                                                           if k != "level"}}))):
        run = tmp_path_factory.mktemp("keywords") / name
        ingest(system, [str(data / "loghub_2k/BGL/BGL_2k.log.gz")], run, window="line", spark=spark)
        write_events(run, "BGL", {})
        runs[name] = run
    return runs


def artifacts(run: Path, exp_name: str = "hdfs_to_bgl") -> Artifacts:
    from fusionlog.config import load_experiment
    from fusionlog.train.data import read_windows

    ids = read_windows(run, "BGL", ["window_id"])["window_id"].to_pylist()
    return Artifacts(run=run, exp=load_experiment(exp_name), ids=ids, routes=dict.fromkeys(ids, "general"),
                     threshold=0.5, models={}, rounds=0, small=lambda _d: {}, llm=lambda _p: {})


def test_keywords_on_bgl_lines(bgl_runs: dict[str, Path]) -> None:
    from sklearn.metrics import f1_score, roc_auc_score

    from fusionlog.train.data import read_windows

    art = artifacts(bgl_runs["no-levels"])
    t = get("keywords").score(art)
    flags = np.array(t["label"].to_pylist(), bool)
    w = read_windows(art.run, "BGL", ["window_id", "label"])
    assert w["window_id"].to_pylist() == art.ids
    y = np.array(w["label"].to_pylist())
    lines = pq.read_table(art.run / "lines" / "system=BGL", columns=["content", "label"]).to_pandas()
    assert len(flags) == len(y) == len(lines) == 2000
    # it reads the words, not the level field: the same flags with the levels read
    again = get("keywords").score(artifacts(bgl_runs["levels"]))
    assert again["label"].to_pylist() == t["label"].to_pylist()
    # a baseline between flagging nothing and flagging all: alerts rank above normal lines, and its F1 is above
    # flagging every line (0.133) but below the fusion's
    share, f1 = flags.mean(), f1_score(y, flags)
    assert 0.1 < share < 0.5 and 0.2 < f1 < 0.5, (share, f1)
    assert roc_auc_score(y, t["score"].to_numpy()) > 0.6


def test_keywords_vote_where_no_level_is_logged_and_windows_are_messages(bgl_runs: dict[str, Path],
                                                                           hdfs_natural_run: Path) -> None:
    from fusionlog.events import write_events

    fused = get("fusionlog-vote")
    assert fused.views(artifacts(bgl_runs["levels"])) == ["llm-events", "severity"]  # type: ignore[attr-defined]
    assert fused.views(artifacts(bgl_runs["no-levels"])) == ["llm-events", "keywords"]  # type: ignore[attr-defined]
    # every line at one level (a system that logs nothing but INFO): the level field tells the lines nothing
    import shutil

    one = bgl_runs["levels"].parent / "one-level"
    shutil.copytree(bgl_runs["levels"], one)
    write_events(one, "BGL", dict.fromkeys(("FATAL", "FAILURE", "SEVERE", "ERROR", "WARNING"), "info"))
    assert fused.views(artifacts(one)) == ["llm-events", "severity", "keywords"]  # type: ignore[attr-defined]
    # sessions: the composition views read them, keywords do not vote (HDFS's event sequences log no level)
    from fusionlog.config import load_experiment
    from fusionlog.train.data import read_windows

    run = bgl_runs["levels"].parent / "hdfs"
    shutil.copytree(hdfs_natural_run, run)
    write_events(run, "HDFS")
    ids = read_windows(run, "HDFS", ["window_id"])["window_id"].to_pylist()
    art = Artifacts(run=run, exp=load_experiment("openstack_to_hdfs"), ids=ids, routes=dict.fromkeys(ids, "general"),
                    threshold=0.5, models={}, rounds=0, small=lambda _d: {}, llm=lambda _p: {})
    assert fused.views(art) == ["llm-events", "rarity", "pca"]  # type: ignore[attr-defined]

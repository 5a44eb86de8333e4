"""Invariant Mining (Lou et al. 2010; loglizer's InvariantsMiner): count relations the target's windows keep,
mined without labels, and the windows that break them; on real HDFS blocks at the natural anomaly rate it finds the
anomalous blocks, those that only miss an event among them (labels read by the test only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fusionlog.methods import Artifacts, get
from fusionlog.methods.invariants import breaks, mine_invariants


def _windows() -> list[list[int]]:
    """100 sessions: open (1), two reads (2), close (3); 2 miss a read; 1 holds a rare event (9)."""
    return [[1, 2, 2, 3]] * 100 + [[1, 2, 3]] * 2 + [[1, 2, 2, 3, 9]]


def test_a_count_relation_is_mined_and_a_session_missing_an_event_breaks_it() -> None:
    w = _windows()
    inv = mine_invariants(w)
    rel = [i for i in inv if len(i.events) > 1]
    assert any(i.events == (9,) for i in inv)  # absent from 99 % of the windows
    # reads = 2 x opens, up to sign; it holds in the 101 windows that read twice
    assert any(i.events == (1, 2) and abs(i.coef[1]) == 1 and i.coef[0] == -2 * i.coef[1] for i in rel), inv
    assert all(i.support >= 0.98 for i in inv)
    b = breaks(w, inv)
    assert (b.count > 0).tolist() == [False] * 100 + [True] * 3
    assert b.relation.tolist() == [False] * 100 + [True, True, False]  # the rare event is no relation
    assert sorted(b.per_invariant.tolist()) == [0] * (len(inv) - 2) + [1, 2]


def test_relations_are_found_with_fewer_distinct_sessions_than_events() -> None:
    # 3 distinct count vectors over 4 frequent events: the invariant space includes the counts' null space
    w = [[1, 2, 3, 4]] * 200 + [[1, 2, 3]] * 2 + [[1, 2, 3, 4, 4]]
    inv = mine_invariants(w)
    assert [(i.events, abs(i.coef[0]) == abs(i.coef[1])) for i in inv] == [((1, 2), True), ((1, 3), True),
                                                                            ((1, 4), True)]
    assert breaks(w, inv).relation.tolist() == [False] * 200 + [True] * 3


def test_a_relation_that_does_not_hold_in_98_percent_is_not_mined() -> None:
    w = [[1, 2, 2, 3]] * 95 + [[1, 2, 3]] * 5  # 5 % break "two reads per open"
    assert not [i for i in mine_invariants(w) if 2 in i.events]
    assert not breaks(w, mine_invariants(w)).relation.any()


def test_invariants_flag_hdfs_anomalies_rarity_and_pca_miss(hdfs_natural: tuple[list, list]) -> None:
    from fusionlog.evaluate.metrics import binary_metrics
    from fusionlog.methods.pca import pca_scores
    from fusionlog.methods.rarity import rarity_scores

    ids, y = hdfs_natural[0], np.array(hdfs_natural[1])
    inv = mine_invariants(ids)
    b = breaks(ids, inv)
    flags, rel = b.count > 0, b.relation
    assert get("invariants").baseline and any(len(i.events) > 1 for i in inv)
    m = binary_metrics(y, flags.astype(float), 0.5)
    assert m["precision"] > 0.85 and m["recall"] > 0.95, m  # flagging every block: F1 ≈ 0.06
    others = (rarity_scores(ids) >= 0.5) | (pca_scores(ids)[0] >= 0.5)
    missed = rel & ~others  # blocks only a broken relation finds: anomalous, nearly all of them
    assert missed.sum() >= 10 and y[missed].mean() > 0.9, (missed.sum(), y[missed].mean())


def test_the_fusion_flags_a_broken_relation_on_sessions_whatever_the_vote(hdfs_natural_run: Path,
                                                                           tmp_path: Path) -> None:
    import shutil

    import pyarrow as pa

    from fusionlog.config import load_experiment
    from fusionlog.events import write_events
    from fusionlog.llm.judge import EVENT_SCORES, write_event_scores
    from fusionlog.train.data import read_windows

    run = tmp_path / "run"
    shutil.copytree(hdfs_natural_run, run)
    write_events(run, "HDFS")
    t = read_windows(run, "HDFS", ["window_id", "template_ids", "label"])
    events = sorted({e for ids in t["template_ids"].to_pylist() for e in ids})
    none = [None] * len(events)  # the LLM abstained on every event: its view flags nothing and does not vote
    write_event_scores(run, "HDFS", pa.table({"template_id": events, "p_yes": none, "score": none, "score_cf": none,
                                              "kind": ["abstained"] * len(events), "p_counter": none},
                                             schema=EVENT_SCORES))
    ids = t["window_id"].to_pylist()
    art = Artifacts(run=run, exp=load_experiment("openstack_to_hdfs"), ids=ids, routes=dict.fromkeys(ids, "general"),
                    threshold=0.5, models={}, rounds=0, small=lambda _d: {}, llm=lambda _p: {})
    fused = get("fusionlog-vote")
    names, d = fused.decide(art)  # type: ignore[attr-defined]
    assert names == ["llm-events", "rarity", "pca"] and d.voting == ["rarity", "pca"]
    tid = art.template_ids()
    rel = breaks(tid, mine_invariants(tid)).relation
    assert d.alone is not None and (d.alone == rel).all()
    assert (d.label == ((d.votes == 2) | rel)).all() and (rel & (d.votes < 2)).sum() >= 10
    from sklearn.metrics import f1_score

    y = np.array(t["label"].to_pylist())
    assert f1_score(y, d.label) > f1_score(y, d.votes == 2) + 0.05, (f1_score(y, d.label), f1_score(y, d.votes == 2))

    # where windows cut the log by time (a raw HDFS archive in 1-hour windows, say), relations are no session's
    # workflow: the majority alone decides
    from fusionlog.config import DatasetSpec
    from fusionlog.experiment import window_kinds

    timed = art.exp.model_copy(update={"datasets": {**art.exp.datasets,
                                                    "HDFS": DatasetSpec(kind="raw", inputs=["x"], window="time")}})
    assert window_kinds(timed)["HDFS"] == "time" and window_kinds(art.exp)["HDFS"] == "session"
    _, dt = fused.decide(Artifacts(run=run, exp=timed, ids=ids, routes=art.routes, threshold=0.5, models={}, rounds=0,
                                   small=lambda _d: {}, llm=lambda _p: {}))  # type: ignore[attr-defined]
    assert dt.alone is None and (dt.label == (dt.votes == 2)).all()

    # the report says which relations, in words (the notes as the detect stage writes them)
    import json

    from fusionlog.evaluate.run_report import relation_notes
    from fusionlog.rundir import method_notes_file

    get("invariants").score(art)
    notes = {"invariants": art.notes["invariants"], "fusionlog": {"alone": {"views": ["invariants"]}}}
    for m, n in notes.items():  # the fusion's own notes need the small model (its check): only what is read here
        method_notes_file(run, m).parent.mkdir(parents=True, exist_ok=True)
        method_notes_file(run, m).write_text(json.dumps(n, default=float))
    lines = relation_notes(run, "HDFS", "fusionlog")
    assert lines[0].startswith("Count relations among HDFS's common events") and len(lines) == 6  # the 5 most broken
    assert any("= 3 x count(" in x and "allocateBlock" in x for x in lines[1:]), lines

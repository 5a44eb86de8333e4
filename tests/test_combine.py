"""The fusion learned on the labeled sources (fusionlog.combine): system-agnostic evidence, the combiners, the cut
from the sources; on the real label-free views of real labeled systems (HDFS blocks, OpenStack-Kalaki instances)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fusionlog.combine import (
    FEATURES,
    RANKS,
    VIEWS,
    SystemViews,
    attribute,
    best_cut,
    design,
    evidence,
    evidence_table,
    feature_names,
    fit,
    tail_share,
)

REPO = Path(__file__).resolve().parents[1]


def _system(name: str, scores: dict, flags: dict, labels: np.ndarray | None = None) -> SystemViews:
    n = len(next(iter(scores.values())))
    full = {v: scores.get(v, np.zeros(n)) for v in VIEWS}
    fl = {v: flags.get(v, np.zeros(n, bool)) for v in VIEWS}
    return SystemViews(name, [f"{name}-{i}" for i in range(n)], full, fl, dict.fromkeys(VIEWS, True), labels)


def test_tail_share_is_the_share_scoring_at_least_as_high() -> None:
    s = np.array([0.1, 0.9, 0.5, 0.5, 0.0])
    assert tail_share(s).tolist() == [0.8, 0.2, 0.6, 0.6, 1.0]


def test_a_view_that_flags_most_windows_carries_little_evidence_and_one_that_does_not_apply_none() -> None:
    n = 100
    rng = np.random.default_rng(0)
    common = np.arange(n) < 60  # a warning in 60 % of the windows
    rare = np.arange(n) < 1
    sv = _system("X", {"llm-events": common + rng.random(n) * 0.01, "severity": rare * 1.0, "pca": rng.random(n)},
                 {"llm-events": common, "severity": rare, "pca": np.ones(n, bool)})
    sv.applies["pca"] = True
    ev = evidence(sv)
    j = {v: VIEWS.index(v) for v in VIEWS}
    assert ev["flag"][0, j["llm-events"]] == pytest.approx(-np.log10(0.6))  # 0.22: little
    assert ev["flag"][0, j["severity"]] == pytest.approx(2.0)  # 1 % of the windows: much
    assert (ev["flag"][:, j["pca"]] == 0).all()  # flags every window: no evidence at its cut
    assert ev["surprise"][:, j["rarity"]].max() == 0  # scores every window alike
    sv.applies["severity"] = False
    assert (evidence(sv)["surprise"][:, j["severity"]] == 0).all()


def test_ranked_evidence_does_not_depend_on_which_view_holds_it() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.random(50), rng.random(50)
    one = _system("X", {"llm-events": a, "rarity": b}, {"llm-events": a > 0.9, "rarity": b > 0.8})
    two = _system("X", {"llm-events": b, "rarity": a}, {"llm-events": b > 0.8, "rarity": a > 0.9})
    assert np.allclose(design(evidence(one)), design(evidence(two)))
    assert not np.allclose(design(evidence(one), "per-view"), design(evidence(two), "per-view"))
    assert design(evidence(one)).shape == (50, len(FEATURES) * RANKS) == (50, len(feature_names()))


def test_a_linear_combiner_splits_each_windows_log_odds_into_the_views_shares() -> None:
    rng = np.random.default_rng(2)
    sv = _system("X", {v: rng.random(40) for v in VIEWS}, {v: rng.random(40) > 0.8 for v in VIEWS})
    ev = evidence(sv)
    for layout in ("ranked", "per-view"):
        names = feature_names(layout)
        w = dict(zip(names, rng.normal(size=len(names)), strict=True))
        parts = attribute(ev, w, layout)
        assert np.allclose(sum(parts.values()), design(ev, layout) @ np.array([w[k] for k in names]))


def test_the_cut_has_the_best_mean_f1_over_the_systems_in_the_middle_of_its_interval() -> None:
    y = np.array([1, 0, 0, 0, 1, 1, 0, 0])
    p = np.array([0.9, 0.6, 0.1, 0.1, 0.7, 0.4, 0.3, 0.2])
    sys = np.array(["a"] * 4 + ["b"] * 4)
    cut, f1 = best_cut(p, y, sys)
    # any cut in (0.3, 0.4]: a, 1 of 2 flags right; b, both found; any in (0.6, 0.7]: a, its one; b, one of two: the
    # same mean; lower or higher, the mean falls
    assert f1 == pytest.approx((2 / 3 + 1.0) / 2) and (0.3 < cut <= 0.4 or 0.6 < cut <= 0.7)
    one, f = best_cut(p, y, np.array(["a"] * 8))  # one system: its own best, its three anomalies at (0.3, 0.4]
    assert f == pytest.approx(6 / 7) and one == pytest.approx(0.35, abs=0.003)
    # a wide gap between the anomalies and the rest: the cut is its middle, not an edge
    wide, _ = best_cut(np.array([0.95, 0.9, 0.2, 0.1]), np.array([1, 1, 0, 0]), np.array(["a"] * 4))
    assert wide == pytest.approx(0.55, abs=0.003)
    # several cross-validated predictions of the same windows: their F1 curves are averaged
    two, _ = best_cut([np.array([0.95, 0.9, 0.2, 0.1]), np.array([0.95, 0.5, 0.4, 0.1])], np.array([1, 1, 0, 0]),
                      np.array(["a"] * 4))
    assert two == pytest.approx(0.45, abs=0.003)  # (0.4, 0.5]: the only cuts right in both


@pytest.fixture(scope="module")
def labeled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SystemViews]:
    """The real label-free views (all but the LLM's) of two real labeled systems, ingested in one run."""
    from fusionlog.config import load_devset
    from fusionlog.experiment import ingest_dataset
    from fusionlog.methods import Artifacts
    from fusionlog.methods.learned import system_views

    dev = load_devset("dev")
    run = tmp_path_factory.mktemp("combine")
    for name in ("HDFS", "OpenStackKalaki"):
        ingest_dataset(name, dev.datasets[name], run)
    from fusionlog.events import write_events

    for name in ("HDFS", "OpenStackKalaki"):
        write_events(run, name, {})
    exp = dev.fold("HDFS").model_copy(update={"datasets": {k: v for k, v in dev.datasets.items() if k != "BGL"},
                                              "sources": ["OpenStackKalaki"]})
    from fusionlog.train.data import read_windows

    ids = sorted(read_windows(run, "HDFS", ["window_id"])["window_id"].to_pylist())
    art = Artifacts(run=run, exp=exp, ids=ids, routes=dict.fromkeys(ids, "general"), threshold=0.5, models={},
                    rounds=0, small=lambda _d: {}, llm=lambda _p: {})
    import pyarrow as pa

    from fusionlog.llm.judge import EVENT_SCORES, write_event_scores

    for name in ("HDFS", "OpenStackKalaki"):  # no LLM here: it abstained on every event (its view flags nothing)
        ev = sorted({e for x in read_windows(run, name, ["template_ids"])["template_ids"].to_pylist() for e in x})
        none = [None] * len(ev)
        write_event_scores(run, name, pa.table({"template_id": ev, "p_yes": none, "score": none, "score_cf": none,
                                                "kind": ["abstained"] * len(ev), "p_counter": none},
                                               schema=EVENT_SCORES))
    out = {"HDFS": system_views(art, "HDFS", labeled=True), "OpenStackKalaki": system_views(art, "OpenStackKalaki",
                                                                                            labeled=True)}
    assert not out["HDFS"].applies["severity"] and out["HDFS"].applies["invariants"]  # sequences: no levels
    out["_art"] = art  # type: ignore[assignment]
    return out


def test_learned_where_a_source_has_windows_of_the_targets_family_and_the_vote_where_none_has(
        labeled: dict[str, SystemViews]) -> None:
    import json

    from fusionlog.config import DatasetSpec
    from fusionlog.methods import Artifacts, get

    art: Artifacts = labeled["_art"]  # type: ignore[assignment]
    ids = art.ids
    small = lambda _d: dict.fromkeys(ids, 0.0)  # noqa: E731  (the small model's check only: it scores nothing)

    def fresh(exp: object) -> Artifacts:
        return Artifacts(run=art.run, exp=exp, ids=ids, routes=art.routes, threshold=0.5,  # type: ignore[arg-type]
                         models={"general": "-"}, rounds=0, small=small, llm=lambda _p: {})

    method = get("fusionlog")
    learned = fresh(art.exp)
    t = method.score(learned)
    notes = learned.notes["fusionlog"]
    assert notes["combiner"]["sources"].keys() == {"OpenStackKalaki"} and set(t["scorer"].to_pylist()) == {"combiner"}
    assert learned.tables["fusionlog"]["combiner_train"].num_rows == len(labeled["OpenStackKalaki"].ids)
    assert json.dumps(notes, default=float)  # what the detect stage writes
    # the same blocks cut as a stream (time windows): no source has windows of that family, the vote decides
    timed = art.exp.model_copy(update={"datasets": {**art.exp.datasets,
                                                    "HDFS": DatasetSpec(kind="raw", inputs=["x"], window="time")}})
    assert method.source_systems(timed) == [] and get("fusionlog-ungated").source_systems(timed) == ["OpenStackKalaki"]
    voted = fresh(timed)
    t = method.score(voted)
    assert set(t["scorer"].to_pylist()) == {"vote"} and voted.notes["fusionlog"]["combiner"] is None
    assert t["label"].to_pylist() == voted.scores("fusionlog-vote")["label"].to_pylist()


def test_learned_on_one_real_system_it_finds_the_anomalies_of_another(labeled: dict[str, SystemViews]) -> None:
    from sklearn.metrics import f1_score

    src, tgt = labeled["OpenStackKalaki"], labeled["HDFS"]
    y = tgt.labels
    comb = fit(evidence_table([src]), "boosting", "ranked")
    p = comb.proba(evidence(tgt))
    f1 = f1_score(y, p >= comb.cut)
    best_view = max(f1_score(y, tgt.flags[v]) for v in VIEWS)
    assert f1 >= best_view - 0.05, (f1, best_view)  # what one system's labels teach carries over to another
    assert f1 > 5 * f1_score(y, np.ones(len(y), bool))  # and is nothing like flagging everything
    # the target's labels are never an input: the combiner is the same whatever they are
    again = fit(evidence_table([src]), "boosting", "ranked")
    assert again.cut == comb.cut and np.array_equal(again.proba(evidence(tgt)), p)


def test_every_source_weighs_the_same_however_many_windows_it_has(labeled: dict[str, SystemViews]) -> None:
    import pyarrow as pa

    table = evidence_table([labeled["OpenStackKalaki"], labeled["HDFS"]])
    hdfs = table.filter(pa.compute.equal(table["system"], "HDFS"))
    doubled = pa.concat_tables([table, hdfs])
    a, b = fit(table, "logistic"), fit(doubled, "logistic")
    assert a.weights is not None and b.weights is not None
    assert np.allclose(list(a.weights.values()), list(b.weights.values()), atol=0.05)


def test_boosted_trees_never_score_more_evidence_lower(labeled: dict[str, SystemViews]) -> None:
    comb = fit(evidence_table([labeled["OpenStackKalaki"], labeled["HDFS"]]), "boosting", "ranked")
    ev = evidence(labeled["HDFS"])
    more = {f: m * 1.5 for f, m in ev.items()}
    assert (comb.proba(more) >= comb.proba(ev) - 1e-9).all()


def test_where_the_vote_decides_a_view_that_flags_most_windows_does_not_vote(labeled: dict[str, SystemViews]) -> None:
    """HDFS blocks with the LLM's view flagging every block that holds a common event (in most of them, as a warning
    logged in half a system's windows): the vote as it is lets it vote, the vote the learned fusion falls back on
    does not."""
    import pyarrow as pa

    from fusionlog.llm.judge import EVENT_SCORES, write_event_scores
    from fusionlog.methods import Artifacts, get
    from fusionlog.train.data import read_windows

    art: Artifacts = labeled["_art"]  # type: ignore[assignment]
    tids = read_windows(art.run, "HDFS", ["template_ids"])["template_ids"].to_pylist()
    df: dict[int, int] = {}
    for x in tids:
        for e in set(x):
            df[e] = df.get(e, 0) + 1
    common = max((e for e in df if df[e] < len(tids)), key=df.get)
    assert df[common] / len(tids) > 0.5
    events = sorted(df)
    score = [0.9 if e == common else 0.1 for e in events]
    none = [None] * len(events)
    write_event_scores(art.run, "HDFS", pa.table({"template_id": events, "p_yes": score, "score": score,
                                                  "score_cf": none, "kind": ["verdict"] * len(events),
                                                  "p_counter": none}, schema=EVENT_SCORES))
    try:
        fresh = Artifacts(run=art.run, exp=art.exp, ids=art.ids, routes=art.routes, threshold=0.5, models={},
                          rounds=0, small=lambda _d: {}, llm=lambda _p: {})
        vote = get("fusionlog-vote")
        _, as_is = vote.decide(fresh)  # type: ignore[attr-defined]
        _, ruled = vote.decide(fresh, most=0.5)  # type: ignore[attr-defined]
        # as it is, the view is weighed (here Dawid-Skene finds it going against rarity and PCA and leaves it out;
        # with one view fewer on its side it would decide); where the learned fusion falls back, it is not a candidate
        assert "llm-events" in as_is.fused.sensitivity and "llm-events" not in ruled.fused.sensitivity
        assert ruled.voting == ["rarity", "pca"]
    finally:  # the other tests' LLM: it abstained on every event
        write_event_scores(art.run, "HDFS", pa.table({"template_id": events, "p_yes": none, "score": none,
                                                      "score_cf": none, "kind": ["abstained"] * len(events),
                                                      "p_counter": none}, schema=EVENT_SCORES))


def test_a_combiner_that_predicts_its_sources_no_better_than_flagging_everything_learned_nothing() -> None:
    from fusionlog.combine import Combiner
    from fusionlog.methods.learned import learned_anything

    flat = Combiner("boosting", "ranked", 0.035, None, sources={"S": {"windows": 2069, "anomalous": 198,
                                                                      "f1_out_of_fold": 2 * 198 / (2069 + 198)}})
    useful = Combiner("boosting", "ranked", 0.4, None, sources={"S": {"windows": 2069, "anomalous": 198,
                                                                        "f1_out_of_fold": 0.6}})
    assert not learned_anything(flat) and learned_anything(useful)

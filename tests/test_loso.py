"""``fusionlog results --loso`` on a small slice of the development set (HDFS blocks, BGL_2k lines, OpenStack-Kalaki
instances, sampled), with the LLM played by the TEST DOUBLE of test_pipeline (a keyword rule, never reported as the
LLM's labels): every system the target once, one LLM cache across the folds, the table and its mean."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.fake_openai import FakeOpenAIEndpoint
from tests.test_pipeline import keyword_double

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def double() -> Iterator[FakeOpenAIEndpoint]:
    with FakeOpenAIEndpoint(keyword_double) as fake:
        yield fake


def test_loso_scores_each_system_as_the_target_of_the_others(double: FakeOpenAIEndpoint, tmp_path: Path) -> None:
    from fusionlog.config import load_devset
    from fusionlog.evaluate.loso import loso, markdown

    dev = {
        "name": "slice", "description": "a small slice of the development set",
        "datasets": {
            "HDFS": {"kind": "sequences", "templates": "data/HDFS/HDFS_templates.csv",
                     "sequences": ["data/HDFS/hdfs_train.gz:normal:0.15",
                                   "data/HDFS/hdfs_test_abnormal.gz:anomalous:0.003"]},
            "BGL": {"kind": "raw", "inputs": ["data/loghub_2k/BGL/BGL_2k.log.gz"], "window": "line"},
            "OpenStackKalaki": {"kind": "sequences", "templates": "data/OpenStack/OpenStack_templates.csv",
                                "sequences": ["data/OpenStack/kalaki/openstack_test_normal.gz:normal:0.15",
                                              "data/OpenStack/kalaki/openstack_test_abnormal.gz:anomalous:0.15"]},
        },
        "experiment": {"train": {"steps": 20, "eval_every": 10}, "run": {"compare": ["fusionlog-vote"]},
                       "llm": {"backend": "openai", "base_url": double.url, "model": "test-double", "retries": 1,
                               "backoff_s": 0.01}},
    }
    path = tmp_path / "slice.yaml"
    path.write_text(yaml.safe_dump(dev, sort_keys=False))
    root = tmp_path / "loso"
    out = loso(load_devset(path), root, [0])
    assert list(out["targets"]) == ["HDFS", "BGL", "OpenStackKalaki"]
    for t, x in out["targets"].items():
        assert t not in x["sources"] and len(x["sources"]) == 2 and x["anomalous"] > 0 and x["best_label_free"]
    learned = out["methods"]["fusionlog"]
    assert set(learned["f1"]) == {"HDFS", "BGL", "OpenStackKalaki"} and learned["mean_f1"] is not None
    assert learned["mean_f1"] == pytest.approx(sum(v["mean"] for v in learned["f1"].values()) / 3)
    assert "fusionlog-vote" in out["methods"] and "rarity" in out["methods"]
    # each fold's combiner learned on its own two sources, never on its target
    for fold in out["folds"]:
        notes = json.loads((root / fold["experiment"] / "modes" / "fusionlog" / "notes.json").read_text())
        assert sorted(notes["sources"]) == sorted(fold["sources"]) and fold["target"] not in notes["sources"]
        learned = notes["combiner"] or notes.get("learned")  # None only where the gate hands the target to the vote
        if learned is None:
            assert notes["why_vote"] and not notes["sources_of_its_family"], notes
        else:
            assert sorted(learned["sources"]) == sorted(fold["sources"])
    # one LLM cache across the folds: the first fold asked about every system's events, the others asked nothing
    for fold in out["folds"]:
        assert (root / fold["experiment"] / "llm_cache.sqlite").is_symlink()
    calls = [fold["seeds"][0]["llm_event_calls"] for fold in out["folds"]]
    assert calls[0] > 0 and calls[1:] == [0, 0], calls
    table = markdown(out)
    assert "| fusionlog |" in table and "mean F1" in table and (root / "slice.loso.md").read_text() == table

"""Label-quality plumbing on real OpenStack instance sequences, with a TEST DOUBLE of the HTTP endpoint
(its labels are the double's, never reported): knowledge base in LanceDB, few-shot prompts, kNN vote."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fusionlog.config import LLMConfig
from fusionlog.llm.client import ChatClient
from fusionlog.llm.quality import label_quality
from tests.conftest import embedded_sequences
from tests.fake_openai import FakeOpenAIEndpoint


@pytest.fixture(scope="module")
def run(ray_local, data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return embedded_sequences(tmp_path_factory.mktemp("llm") / "run", "OpenStack",
                              data / "OpenStack/OpenStack_templates.csv",
                              [f"{data}/OpenStack/openstack_test_normal.gz:normal",
                               f"{data}/OpenStack/openstack_test_abnormal.gz:anomalous"])


def test_label_quality_plumbing(run: Path) -> None:
    tmp_path = run

    def answer(body: dict) -> str:
        user = body["messages"][1]["content"]
        label = "anomalous" if "Example (" in user else "normal"  # few-shot -> anomalous, zero-shot -> normal
        return json.dumps({"label": label, "confidence": 0.5, "reason": "double"})

    with FakeOpenAIEndpoint(answer) as fake:
        client = ChatClient(fake.url, "double", backoff_s=0.01)
        res = label_quality(tmp_path, "OpenStack", client, LLMConfig(k_examples=3), n=50)
    w = pq.read_table(tmp_path / "windows/system=OpenStack").to_pandas()
    test_sigs = {tuple(x) for x in w[w.split == "test"].template_ids}
    assert res["items"] == min(50, len(test_sigs)) and 0 < res["kb_items"]
    assert res["zero_shot"]["recall"] == 0.0 and res["few_shot"]["recall"] == 1.0  # the double's rule, end to end
    assert res["zero_shot"]["calls"] == res["few_shot"]["calls"] == res["items"]
    few = [b for b in fake.requests if "Example (" in b["messages"][1]["content"]]
    assert len(few) == res["items"] and all(b["messages"][1]["content"].count("Example (") == 3 for b in few)
    assert 0.0 <= res["knn_vote"]["accuracy"] <= 1.0 and res["items_in_kb"] <= res["items"]


def test_label_stage_writes_every_window_and_caches(run: Path) -> None:
    from fusionlog.llm.stage import label_system

    answer = json.dumps({"label": "normal", "confidence": 0.9, "reason": "double"})
    with FakeOpenAIEndpoint(lambda body: answer) as fake:
        cfg = LLMConfig(k_examples=2)
        first = label_system(run, "OpenStack", ChatClient(fake.url, "double"), cfg, kb_systems=[])
        again = label_system(run, "OpenStack", ChatClient(fake.url, "double"), cfg, kb_systems=[])
    out = pq.read_table(run / "llm_labels/system=OpenStack").to_pandas()
    windows = pq.read_table(run / "windows/system=OpenStack").num_rows
    assert len(out) == windows == first.windows and set(out["label"]) == {"normal"} and out["label"].notna().all()
    assert set(out["purpose"]) == {"label"}  # one schema for llm_labels (rundir.VERDICTS), its own purpose
    assert first.signatures == out["signature"].nunique() < windows and first.llm_calls == first.signatures
    assert (again.llm_calls, again.cache_hits) == (0, first.signatures) and len(fake.requests) == first.signatures

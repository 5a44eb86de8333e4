"""Training of the small model: the meta step by hand, then Ray Train end to end on the shipped sequence
sets (HDFS blocks labeled -> OpenStack instances as the unlabeled target)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from fusionlog.config import EmbedConfig, ModelConfig, RouteConfig, TrainConfig
from fusionlog.model.index import pad
from fusionlog.model.score import score_system
from fusionlog.model.small import SmallModel
from fusionlog.train.data import build_bundle, time_slices
from fusionlog.train.steps import Batch, meta_step, supervised_step

FAST = {"steps": 40, "eval_every": 20, "batch_size": 32}
SMALL = ModelConfig(hidden=16, layers=1, dropout=0.0, event_features=[])


def _model(seed: int = 0) -> SmallModel:
    torch.manual_seed(seed)
    return SmallModel(torch.nn.functional.normalize(torch.randn(6, 8), dim=1), SMALL)


def _batch(rows: list[list[int]], labels: list[int]) -> Batch:
    return Batch(pad([np.array(r) for r in rows]), torch.tensor(labels))


def _grads(model: SmallModel, batch: Batch) -> list[torch.Tensor]:
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(batch.x)[0], batch.y).backward()
    params = [p for p in model.parameters() if p.requires_grad]
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]


def test_meta_step_is_first_order_mldg() -> None:
    """theta <- theta - lr * (g_s(theta) + w * g_q(theta - a * g_s(theta))), checked against a manual computation."""
    support, query = _batch([[1, 2, 3], [4, 5]], [0, 1]), _batch([[2, 2], [5, 4, 3, 1]], [1, 0])
    lr, a, w = 0.1, 0.5, 0.7
    model = _model()
    ref = copy.deepcopy(model)
    theta = [p.detach().clone() for p in ref.parameters() if p.requires_grad]
    g_s = _grads(ref, support)
    with torch.no_grad():
        for p, g in zip([p for p in ref.parameters() if p.requires_grad], g_s, strict=True):
            p.sub_(a * g)
    g_q = _grads(ref, query)
    expected = [t - lr * (gs + w * gq) for t, gs, gq in zip(theta, g_s, g_q, strict=True)]
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    meta_step(model, opt, support, query, inner_lr=a, query_weight=w)
    got = [p.detach() for p in model.parameters() if p.requires_grad]
    for e, g in zip(expected, got, strict=True):
        assert torch.allclose(e, g, atol=1e-6)
    # and it is not the plain supervised step
    plain = _model()
    supervised_step(plain, torch.optim.SGD([p for p in plain.parameters() if p.requires_grad], lr=lr), support)
    assert not all(torch.allclose(a_, b_) for a_, b_ in zip(got, [p for p in plain.parameters() if p.requires_grad],
                                                              strict=True))


def test_alignment_moves_the_encoder_against_the_discriminator() -> None:
    support, query = _batch([[1, 2, 3], [4, 5]], [0, 1]), _batch([[2, 2], [5, 4]], [1, 0])
    target = pad([np.array([3, 3, 1]), np.array([5])])
    runs = {}
    for weight in (0.0, 1.0):
        m = _model()
        meta_step(m, torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1), support, query, 0.1,
                  1.0, target, weight, lam=1.0)
        runs[weight] = m
    gru = [n for n, _ in runs[0.0].named_parameters() if n.startswith("gru.")]
    state0, state1 = runs[0.0].state_dict(), runs[1.0].state_dict()
    assert any(not torch.allclose(state0[n], state1[n]) for n in gru)  # the domain loss reaches the encoder
    assert torch.equal(state0["embed.weight"], state1["embed.weight"])  # template vectors stay frozen


def test_time_slices_follow_files_without_timestamps() -> None:
    t = pa.table({"start_ts": pa.nulls(6, pa.timestamp("us")), "first_file": ["a"] * 4 + ["b"] * 2,
                  "first_line": [1, 2, 3, 4, 1, 2]})
    assert time_slices(t, 2).tolist() == [0, 0, 1, 1, 0, 1]
    t2 = t.set_column(0, "start_ts", pa.array(range(6), pa.int64()).cast(pa.timestamp("us")))
    assert time_slices(t2, 3).tolist() == [0, 0, 1, 1, 2, 2]


@pytest.fixture(scope="module")
def run(ray_local, data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """HDFS blocks (labeled source) and OpenStack instances (target), embedded and routed."""
    from fusionlog.embed.stage import embed
    from fusionlog.ingest.sequences import ingest_sequences, parse_spec
    from fusionlog.route.stage import route

    out = tmp_path_factory.mktemp("train") / "run"
    ingest_sequences("HDFS", data / "HDFS/HDFS_templates.csv",
                     [parse_spec(f"{data}/HDFS/hdfs_train.gz:normal:0.3"),
                      parse_spec(f"{data}/HDFS/hdfs_test_abnormal.gz:anomalous:0.1")], out)
    ingest_sequences("OpenStack", data / "OpenStack/OpenStack_templates.csv",
                     [parse_spec(f"{data}/OpenStack/openstack_test_normal.gz:normal"),
                      parse_spec(f"{data}/OpenStack/openstack_test_abnormal.gz:anomalous")], out)
    embed(out, EmbedConfig())
    route(out, ["HDFS"], "OpenStack", RouteConfig(tau_quantile=0.5))
    return out


def test_bundle_has_source_labels_and_unlabeled_general_target(run: Path) -> None:
    b, index = build_bundle(run, ["HDFS"], "OpenStack", slices=4, max_len=512, max_train_windows=10**6)
    routes = pq.read_table(run / "routes/system=OpenStack")
    general = int(pc.sum(pc.equal(routes["route"], "general")).as_py())
    assert general > 0 and len(b.where("target")) == general
    assert set(b.label[b.where("target")].tolist()) == {-1}
    windows = pq.read_table(run / "windows/system=HDFS")
    train = windows.filter(pc.equal(windows["split"], "train"))
    assert len(b.where("train")) == train.num_rows
    assert sorted(b.label[b.where("train")].tolist()) == sorted(train["label"].to_pylist())
    assert set(b.task[b.where("train")].tolist()) == {0, 1, 2, 3}  # time slices of the one source
    assert b.vectors.shape == (len(index.row), 384)


def test_train_with_ray_train_end_to_end(run: Path) -> None:
    from fusionlog.train.stage import train

    cfg = TrainConfig(objective="meta_align", seed=1, **FAST)
    ticks: list[tuple[int, int]] = []
    res = train(run, ["HDFS"], "OpenStack", cfg, SMALL, progress=lambda d, t: ticks.append((d, t)))
    # the progress bar follows the steps rank 0 wrote (the last read is the step the worker reached)
    assert ticks[0] == (0, cfg.steps) and ticks[-1] == (cfg.steps, cfg.steps), ticks
    assert [d for d, _ in ticks] == sorted(d for d, _ in ticks)
    out = Path(res.model_dir)
    assert (out / "model.safetensors").exists() and json.loads((out / "model.json").read_text())["train"]["objective"] \
        == "meta_align"
    assert res.best_step in (20, 40) and res.windows["target"] > 0
    # it learned something real on the source: better than flagging every val window
    val = pq.read_table(run / "windows/system=HDFS").to_pandas().query("split == 'val'")
    p = val["label"].mean()
    assert res.val["val_f1"] > 2 * p / (1 + p) + 0.02
    ids, scores = score_system(run, out, "OpenStack")
    assert len(ids) == pq.read_table(run / "windows/system=OpenStack").num_rows
    assert np.all((scores >= 0) & (scores <= 1)) and scores.std() > 0
    again = train(run, ["HDFS"], "OpenStack", cfg, SMALL)
    assert again.reused and again.best_step == res.best_step


def test_event_features_widen_the_template_table_and_travel_with_the_model(run: Path) -> None:
    """Severity and rarity beside each template's vector, from each system's own windows; the scorer rebuilds
    the same table from model.json; a different feature set is a different model (not reused)."""
    from fusionlog.events import write_events
    from fusionlog.model.features import event_features
    from fusionlog.model.score import WindowScorer
    from fusionlog.train.stage import train

    for system in ("HDFS", "OpenStack"):
        write_events(run, system)
    feats = ["severity", "rarity"]
    b, index = build_bundle(run, ["HDFS"], "OpenStack", slices=4, max_len=512, max_train_windows=10**6,
                            features=feats)
    assert b.vectors.shape == (len(index.row), 384 + 3)
    plain, _ = build_bundle(run, ["HDFS"], "OpenStack", slices=4, max_len=512, max_train_windows=10**6)
    assert np.array_equal(b.vectors[:, :384], plain.vectors)  # the semantic part is untouched
    hdfs = event_features(run, "HDFS", feats)
    row = index.row[("HDFS", next(iter(hdfs)))] - 1
    assert np.array_equal(b.vectors[row, 384:], hdfs[next(iter(hdfs))])
    assert not b.vectors[:, 384:386].any()  # sequence sets log no levels: severity and "logged" are 0
    rarity = b.vectors[:, 386]
    assert rarity.min() >= 0 and rarity.max() <= 1 and rarity.std() > 0
    cfg = TrainConfig(objective="meta_align", seed=2, steps=10, eval_every=10, batch_size=16)
    mcfg = SMALL.model_copy(update={"event_features": feats})
    res = train(run, ["HDFS"], "OpenStack", cfg, mcfg)
    meta = json.loads((Path(res.model_dir) / "model.json").read_text())
    # HDFS, the only labeled system, logs no levels: severity would be constant in training, so it is left out
    assert meta["model"]["event_features"] == ["rarity"] and any("'severity' not used" in n for n in res.notes)
    scorer = WindowScorer(run, Path(res.model_dir), ["OpenStack"])
    assert scorer.index.vectors.shape[1] == 384 + 1
    other = train(run, ["HDFS"], "OpenStack", cfg, SMALL, name=Path(res.model_dir).name)
    assert not other.reused  # the same name, another feature set: trained again


def test_training_never_reads_target_labels(run: Path, tmp_path: Path) -> None:
    """Same seed, target labels erased: the same weights come out."""
    from safetensors.torch import load_file

    from fusionlog.train.stage import train

    blind = tmp_path / "blind"
    shutil.copytree(run, blind, ignore=shutil.ignore_patterns("models", "ray_train", "eval"))
    wdir = blind / "windows/system=OpenStack"
    t = pq.read_table(wdir)
    t = t.set_column(t.schema.get_field_index("label"), "label", pa.nulls(t.num_rows, t.schema.field("label").type))
    shutil.rmtree(wdir)
    wdir.mkdir()
    pq.write_table(t, wdir / "part-0.parquet")
    cfg = TrainConfig(objective="meta_align", seed=3, steps=10, eval_every=10, batch_size=16)
    a, b = (train(r, ["HDFS"], "OpenStack", cfg, SMALL) for r in (run, blind))
    wa, wb = (load_file(str(Path(x.model_dir) / "model.safetensors")) for x in (a, b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_evaluate_reports_methods_and_baselines(run: Path) -> None:
    from fusionlog.config import DatasetSpec, EvalConfig, ExperimentConfig
    from fusionlog.evaluate.stage import evaluate

    spec = DatasetSpec(kind="sequences", templates="x", sequences=["x:normal"])  # prepared already
    exp = ExperimentConfig(name="t", datasets={"HDFS": spec, "OpenStack": spec}, sources=["HDFS"],
                           target="OpenStack", model=SMALL, train=TrainConfig(**FAST),
                           evaluate=EvalConfig(seeds=[0], objectives=["source_only"]))
    res = evaluate(run, exp)
    labels = pq.read_table(run / "windows/system=OpenStack")["label"].to_numpy()
    p = labels.mean()
    m = res["methods"]
    assert set(m) == {"source_only", "majority", "all_anomalous", "router_novelty", "reference_in_domain"}
    test_windows = pq.read_table(run / "windows/system=OpenStack").to_pandas().query("split == 'test'")
    assert m["reference_in_domain"]["all"]["n"] == len(test_windows)  # the reference is scored on the test split
    assert {r["tau"] for r in res["sweep"]["source_only"]} >= {0.5, 0.9}
    assert m["all_anomalous"]["all"]["f1"]["mean"] == pytest.approx(2 * p / (1 + p))
    assert m["source_only"]["all"]["n"] == len(labels) and m["source_only"]["all"]["positives"] == labels.sum()
    assert res["label_balance"]["OpenStack"]["test"]["anomalous"] > 0
    assert res["duplicates"]["HDFS"]["val_in_train"] <= res["duplicates"]["HDFS"]["val_distinct"]
    assert 0 < res["signature_ceiling"]["best_f1"] <= 1
    assert (run / "eval/t.json").exists() and "| source_only |" in (run / "eval/t.md").read_text()


def test_predict_keeps_confident_windows_apart() -> None:
    """A fine-tuned model's logit margins reach 20-35 on a target it learned from pseudo-labels; P(anomalous) is
    computed in float64 so such windows keep their order (float32 rounds them all to 1.0, a tie that moved whole
    groups across the distilled model's cut)."""
    from fusionlog.train.steps import predict

    model, rows = _model(), [np.array([t]) for t in range(1, 6)]
    with torch.no_grad():  # the same ranking, the margins stretched onto [18, 34]
        last = model.head[-1]
        last.bias.zero_()
        logits, _ = model(pad(rows))
        m = logits[:, 1] - logits[:, 0]
        last.weight.mul_(16.0 / float(m.max() - m.min()))
        last.bias[1] = 18.0 - 16.0 * float(m.min()) / float(m.max() - m.min())
        logits, _ = model(pad(rows))
    margin = (logits[:, 1] - logits[:, 0]).double()
    p = predict(model, rows, torch.device("cpu"))
    assert p.dtype == np.float64
    assert margin.abs().min() > 17  # float32's softmax saturates here
    assert len(set(torch.softmax(logits.float(), 1)[:, 1].tolist())) < 5  # float32 ties some of them
    assert list(np.argsort(p)) == list(np.argsort(margin.numpy())) and len(set(p.tolist())) == 5

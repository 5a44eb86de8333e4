"""Config loading: every system file validates; errors name the file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from fusionlog.config import ConfigError, LLMConfig, known_systems, load_ingest, load_system

SIXTEEN = {"Android", "Apache", "BGL", "HDFS", "HPC", "Hadoop", "HealthApp", "Linux", "Mac", "OpenSSH",
           "OpenStack", "Proxifier", "Spark", "Thunderbird", "Windows", "Zookeeper"}


def test_all_sixteen_systems_load() -> None:
    assert SIXTEEN <= set(known_systems())
    for name in SIXTEEN:
        cfg = load_system(name)
        assert cfg.name == name
        cfg.window()  # the default window exists
    assert load_system("HDFS").window().kind == "session"
    assert load_system("BGL").window().kind == "fixed" and load_system("BGL").window("line").kind == "line"
    assert load_system("OpenStack").window().kind == "session"
    assert load_ingest().spark.master == "local[*]"


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "X.yaml"
    p.write_text(text)
    return p


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "name: X\nlog_format: '<Content>'\nmasks: [unclosed\n")
    with pytest.raises(ConfigError, match=r"X\.yaml: line \d+, column \d+: malformed YAML"):
        load_system(str(p))


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("name: X\nlog_format: '<Content>'\ndrain: {depht: 3}\n", "drain.depht"),
        ("name: X\nlog_format: '<Content>'\nmasks: [{name: a, pattern: '(['}]\n", "masks.0.pattern"),
        ("name: X\nlog_format: '<Date> <Msg>'\n", "(top level)"),
        ("name: X\nlog_format: '<Content>'\ndrain: {sim_th: 2}\n", "drain.sim_th"),
        ("name: X\nlog_format: '<Content>'\nwindows: {w: {kind: fixed, size: 3}}\n", "windows.w"),
        ("name: X\nlog_format: '<Content>'\nfields: {level: Lvl}\n", "(top level)"),
    ],
)
def test_bad_keys_are_named(tmp_path: Path, body: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_system(str(_write(tmp_path, body)))
    assert "X.yaml" in str(err.value) and f"key '{key}'" in str(err.value)


def test_unknown_system_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown system 'Nope'.*known: .*HDFS"):
        load_system("Nope")
    with pytest.raises(ConfigError, match="empty file"):
        load_system(str(_write(tmp_path, "")))


def test_all_experiments_load_and_bad_ones_are_named(tmp_path: Path) -> None:
    from fusionlog.config import load_experiment

    names = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "conf/experiments").glob("*.yaml"))
    assert len(names) >= 4 and all(load_experiment(n).name == n for n in names)
    base = ("name: x\ndatasets:\n  A: {kind: sequences, templates: t.csv, sequences: [s:normal]}\n"
            "  B: {kind: raw, inputs: [b.log]}\n")
    cases = {"sources: [A]\ntarget: A\n": "also a source", "sources: [C]\ntarget: B\n": "'C' is not one of",
             "sources: [A]\ntarget: B\ntrain: {objective: maml}\n": "train.objective",
             "sources: [A]\ntarget: B\ntrain: {mode: meta}\n": "'mode' was renamed 'objective'",
             "sources: [A]\ntarget: B\ntrain: {stepz: 3}\n": "train.stepz"}
    for body, msg in cases.items():
        f = tmp_path / "e.yaml"
        f.write_text(base + body)
        with pytest.raises(ConfigError, match=msg) as err:
            load_experiment(f)
        assert str(f) in str(err.value)


def test_an_experiment_overrides_the_embedding_and_interpretations_need_their_prompt(tmp_path: Path) -> None:
    """``embed:`` in an experiment overrides conf/embed.yaml (validated); embedding interpretations without the
    prompt that writes them is refused at the start of the run, naming the setting."""
    from fusionlog.config import load_embed, load_experiment
    from fusionlog.pipeline import Ctx

    assert load_embed(overrides={"text": "interpretation"}).text == "interpretation"
    with pytest.raises(ConfigError, match="text"):
        load_embed(overrides={"text": "summary"})
    exp = load_experiment("hdfs_to_bgl").model_copy(update={"embed": {"text": "interpretation"}})
    with pytest.raises(ValueError, match="event_interpret_prompt"):
        Ctx(tmp_path, exp, LLMConfig(), print)
    ctx = Ctx(tmp_path, exp, LLMConfig(event_interpret_prompt="event_interpret_v1"), print)
    assert ctx.interpreted() == ["BGL", "HDFS"] and ctx.need_judge()
    plain = Ctx(tmp_path, load_experiment("hdfs_to_bgl"), LLMConfig(event_interpret_prompt="event_interpret_v1"), print)
    assert plain.interpreted() == plain.judged() and plain.judged()[0] == "BGL"


def test_train_resources_are_custom_and_outside_the_models_hash() -> None:
    from fusionlog.config import TrainConfig
    from fusionlog.train.stage import SCHEDULING

    assert TrainConfig(resources={"trainers": 1}).resources == {"trainers": 1.0}
    for bad in ({"CPU": 1}, {"gpu": 1}, {"trainers": 0}):
        with pytest.raises(ValidationError, match="resources"):
            TrainConfig(resources=bad)
    assert "resources" in SCHEDULING  # where the workers run, not what they learn

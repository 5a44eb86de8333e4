"""The CLI turns bad config and bad input into one clear message and exit code 2."""

from __future__ import annotations

import os
from pathlib import Path

from typer.testing import CliRunner

from fusionlog.cli import app

runner = CliRunner()


def test_unknown_system_and_missing_input(tmp_path: Path) -> None:
    r = runner.invoke(app, ["ingest", "--system", "Nope", "--out", str(tmp_path), "x.log"])
    assert r.exit_code == 2 and "unknown system 'Nope'" in r.output
    r = runner.invoke(app, ["ingest", "--system", "HDFS", "--out", str(tmp_path), str(tmp_path / "missing.log")])
    assert r.exit_code == 2 and "input not found" in r.output


def test_bad_conf_dir_is_named(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FUSIONLOG_CONF", os.environ["FUSIONLOG_CONF"])  # restored after the test
    (tmp_path / "systems").mkdir()
    (tmp_path / "systems" / "HDFS.yaml").write_text("name: HDFS\nlog_format: '<Content>'\ndrain: {depth: x}\n")
    r = runner.invoke(app, ["ingest", "--system", "HDFS", "--conf", str(tmp_path), "--out", str(tmp_path), "a"])
    assert r.exit_code == 2 and "HDFS.yaml" in r.output and "drain.depth" in r.output


def test_ingest_sequences_command(data: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["ingest-sequences", "--system", "OS_seq", "--templates",
                            str(data / "OpenStack/OpenStack_templates.csv"),
                            "--seq", f"{data}/OpenStack/openstack_test_normal.gz:normal",
                            "--seq", f"{data}/OpenStack/openstack_test_abnormal.gz:anomalous",
                            "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "2050 windows (198 anomalous)" in r.output


def test_experiment_commands_name_what_is_wrong(tmp_path: Path) -> None:
    r = runner.invoke(app, ["evaluate", "no_such_experiment", "--run", str(tmp_path)])
    assert r.exit_code == 2 and "unknown experiment" in r.output and "hdfs_to_openstack" in r.output
    r = runner.invoke(app, ["train", "hdfs_to_openstack", "--run", str(tmp_path), "--objective", "bogus"])
    assert r.exit_code == 2 and "objective" in r.output
    r = runner.invoke(app, ["train", "hdfs_to_openstack", "--run", str(tmp_path)])  # nothing prepared yet
    assert r.exit_code == 2 and "run the events stage" in r.output  # the first stage missing that train reads


def test_evaluation_table_on_all_normal_and_unlabeled_targets() -> None:
    from rich.console import Console

    from fusionlog.cli import evaluation_table
    from fusionlog.stages import EvaluateOut

    def text(ev: EvaluateOut) -> str:
        c = Console(record=True, width=200)
        c.print(evaluation_table(ev))
        return c.export_text()

    normal = text(EvaluateOut(501, {"fusionlog": 0.0, "rarity": 0.0}, anomalous=0,
                              flagged={"fusionlog": 16, "rarity": 19}))
    assert "F1 undefined" in normal and "16" in normal and "3.2%" in normal and "3.8%" in normal
    mixed = text(EvaluateOut(2000, {"fusionlog": 0.622}, anomalous=143, flagged={"fusionlog": 317}))
    assert "F1 on 2000" in mixed and "0.622" in mixed and "undefined" not in mixed
    sliced = text(EvaluateOut(1782, {"fusionlog": 0.104, "rarity": 0.085}, anomalous=43,
                              inside={"windows": 303, "anomalous": 10, "margin_s": 56.0, "f1": {"fusionlog": 0.25}}))
    assert "inside the slice (303 windows, 10 anomalous)" in sliced and "0.250" in sliced and "56 s" in sliced
    old = text(EvaluateOut(2000, {"fusionlog": 0.622}))  # a run recorded before the count was kept
    assert "0.622" in old
    unlabeled = text(EvaluateOut(0, anomalous=0))  # a system nobody labeled: the default use
    assert "no labeled target window" in unlabeled and "F1" not in unlabeled
    counted = text(EvaluateOut(0, anomalous=0, flagged={"fusionlog": 13, "llm-events": 1056}, windows=2000))
    assert "no labeled target window" in counted and "F1" not in counted
    assert "13" in counted and "0.7%" in counted and "52.8%" in counted

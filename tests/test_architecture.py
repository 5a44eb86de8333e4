"""Module boundaries: no module imports another module's private (``_name``) names; only ``fusionlog/rundir.py``
spells a path of the run directory; every detection method is registered and validated by config."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_no_module_imports_another_modules_private_names() -> None:
    bad = []
    for path in [*sorted((REPO / "fusionlog").rglob("*.py")), *sorted((REPO / "jobs").rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fusionlog"):
                bad += [f"{path.relative_to(REPO)}:{node.lineno} {node.module}.{a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
    assert not bad, bad


# a run directory's folder spelled by hand (``run / "windows"``), or a partition (``f"system={target}"``)
RUN_PATH = re.compile(r"""/ ["'](lines|templates|windows|quarantine|routes|models|modes|scores|distill|eval|report"""
                      r"""|stats|state|stages|llm_labels|lancedb|ray_train|logs|events)["']|\bf["']system=\{""")


def test_no_module_spells_a_run_path_by_hand() -> None:
    assert RUN_PATH.search('pq.read_table(run / "routes" / f"system={target}")')
    assert RUN_PATH.search("f\"{run / 'lancedb'}\"") and not RUN_PATH.search('run / "scan"')
    bad = []
    for path in [*sorted((REPO / "fusionlog").rglob("*.py")), *sorted((REPO / "jobs").glob("*.py"))]:
        if path == REPO / "fusionlog" / "rundir.py":
            continue
        for no, line in enumerate(path.read_text().splitlines(), 1):
            if RUN_PATH.search(line):
                bad.append(f"{path.relative_to(REPO)}:{no}: {line.strip()}")
    assert not bad, "spell run paths with fusionlog.rundir:\n" + "\n".join(bad)


def test_config_validates_method_names_against_the_registry() -> None:
    from fusionlog.config import RunSpec
    from fusionlog.methods import names

    assert {"fusionlog", "generallog", "no-router", "llm-only", "general-only", "all-anomalous", "rarity"} <= set(
        names())
    assert RunSpec(mode="rarity", compare=["no-router"]).mode == "rarity"
    with pytest.raises(ValueError, match="unknown detection method 'magic'.*rarity"):
        RunSpec(mode="magic")


def test_stage_results_are_typed_and_persisted_in_the_markers(tmp_path: Path) -> None:
    from fusionlog.pipeline import Stages
    from fusionlog.stages import DistillOut, TrainOut

    markers = Stages(tmp_path)
    markers.mark("train", "k1", TrainOut("models/BGL/meta_align-s0", None), 1.0)
    markers.mark("distill", "k2", DistillOut("m", rounds=[{"round": 1, "kept": 3}], kept=3), 2.0)
    assert markers.done("train", "k1") == TrainOut("models/BGL/meta_align-s0", None)
    assert markers.done("train", "other") is None  # another hash: not done
    d = markers.done("distill")
    assert isinstance(d, DistillOut) and d.kept == 3 and d.llm_calls == 0
    (tmp_path / "stages" / "train.json").write_text('{"hash": "k1", "summary": {"general": "m", "no-router": "x"}}')
    assert markers.done("train", "k1") is None  # an older marker (untyped keys) counts as not done


def test_run_state_says_which_stages_this_call_ran() -> None:
    """A stage read back from its marker made no LLM call in this call: ``fusionlog results`` counts a seed's calls
    only from the stages in ``ran``; the markers' summaries hold the stages' results only."""
    from fusionlog.stages import JudgeOut, RunState

    state = RunState(judge=JudgeOut(system="BGL", asked=15))
    assert state.ran == [] and set(state.summaries()) == {"judge"}
    state.ran.append("judge")
    assert set(state.summaries()) == {"judge"} and RunState().ran == []  # a fresh list per state

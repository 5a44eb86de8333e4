"""A high LLM abstention rate is loud: LabelStats' rate, line and warning (threshold from LLMConfig), and the
report's header banner computed from the stage summaries a run already writes (the issue's run: 213 calls, all
abstained), robust to missing keys."""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fusionlog.config import LLMConfig, load_experiment, load_llm
from fusionlog.evaluate.report import ReportData, metrics_document, render_html
from fusionlog.evaluate.run_report import abstention_banner, build_report, llm_abstention
from fusionlog.llm.label import WARN_RATE, LabelStats

BGL = Path(__file__).resolve().parents[1] / "data" / "loghub_2k" / "BGL" / "BGL_2k.log.gz"


def test_label_stats_rate_line_and_warning() -> None:
    assert LLMConfig().abstain_warn_rate == WARN_RATE == 0.2 and load_llm().abstain_warn_rate == 0.2
    st = LabelStats(windows=300, signatures=71, llm_calls=0, abstained=71, abstained_cached=71, refused=71,
                    reasons={"refused": 71}, problems=["refused: HTTP 400: This model's maximum context length is "
                                                       "2048 tokens"])
    assert st.abstention_rate == 1.0 and "71 abstained (100%, 71 remembered)" in st.line()
    w = st.warning(0.2)
    assert w is not None and "71 of 71 signatures (100%" in w and "refused 71" in w and "HTTP 400" in w
    few = LabelStats(signatures=10, abstained=1)
    assert few.warning(0.2) is None and few.warning(0.1) is not None and "(10%)" in few.line()
    assert LabelStats().abstention_rate == 0.0 and LabelStats().warning(0.0) is None  # nothing decided
    summary = st.summary()
    assert summary["abstention_rate"] == 1.0 and summary["abstained"] == summary["signatures"] == 71
    assert {"windows", "signatures", "calls", "cache_hits", "abstained"} <= set(summary)  # today's keys kept


# the issue's run, with the summary keys the pipeline writes today: 3 rounds x 71 signatures, every call abstained
ISSUE = {"distill": {"rounds": [{"round": r, "labeled": 0, "llm_calls": 71, "cache_hits": 0} for r in (1, 2, 3)],
                     "client": {"requests": 1318, "retries": 1105, "invalid": 0, "abstained": 213}}}


def test_the_abstention_rate_comes_from_the_summaries_with_or_without_new_keys() -> None:
    a = llm_abstention(ISSUE)
    assert (a["abstained"], a["total"], a["rate"], a["basis"]) == (213, 213, 1.0, "LLM calls")
    banner = abstention_banner(ISSUE, 0.2)
    assert banner.startswith("The LLM abstained on 213 of 213 LLM calls (100%")
    # after the fix: one call per signature, the later rounds' abstentions remembered (new keys, per pass)
    fixed = {"distill": {
        "llm_only": LabelStats(windows=500, signatures=71, llm_calls=71, abstained=71, refused=71).summary(),
        "rounds": [{"round": r, "llm_calls": 0, "cache_hits": 0, "signatures": 71, "abstained": 71,
                    "abstained_cached": 71} for r in (1, 2)],
        "client": {"requests": 71, "abstained": 71, "refused": 71}}}
    a = llm_abstention(fixed)
    assert (a["abstained"], a["total"], a["basis"], a["refused"]) == (213, 213, "labeling decisions", 71)
    assert "71 refused by the server as invalid" in abstention_banner(fixed, 0.2)
    # the same keys without the new ones on the rounds: per call, remembered abstentions counted
    partial = {"distill": {"llm_only": {"windows": 500, "signatures": 71, "calls": 71, "abstained": 71},
                           "rounds": [{"round": 1, "llm_calls": 0}], "client": {"abstained": 71}}}
    assert llm_abstention(partial)["rate"] == 1.0
    healthy = {"distill": {"rounds": [{"llm_calls": 100}], "client": {"abstained": 3}}}
    assert llm_abstention(healthy)["rate"] == 0.03 and abstention_banner(healthy, 0.2) is None
    for empty in ({}, {"distill": {}}, {"distill": {"rounds": [{"round": 1}]}}, {"distill": {"client": {}}},
                  {"distill": {"rounds": [], "kept": 0}}, {"distill": None}):
        assert llm_abstention(empty) is None and abstention_banner(empty, 0.0) is None


def test_the_banner_is_in_the_header_escaped() -> None:
    data = ReportData(title="t", experiment="e", target="BGL", sources=["HDFS"], mode="fusionlog", created="now",
                      x_sim=np.zeros(0), routes=np.zeros(0, object), tau=float("nan"),
                      warnings=["The LLM abstained on 213 of 213 LLM calls <script>x</script>"])
    page = render_html(data)
    header = page.split("<header>", 1)[1].split("</header>", 1)[0]
    assert 'id="warnings"' in header and 'role="alert"' in header
    assert html.escape("213 of 213 LLM calls <script>x</script>") in header and "<script>" not in page
    assert metrics_document(data)["warnings"] == data.warnings
    assert 'id="warnings"' not in render_html(ReportData(**{**data.__dict__, "warnings": []}))


def _part(path: Path, table: pa.Table) -> None:
    path.mkdir(parents=True)
    pq.write_table(table, path / "part-0.parquet")


def test_build_report_shows_the_issue_runs_abstentions(tmp_path: Path) -> None:
    exp = load_experiment("hdfs_to_bgl")
    ids = [f"w{i}" for i in range(6)]
    routes = ["general", "proprietary"] * 3
    _part(tmp_path / "routes" / f"system={exp.target}",
          pa.table({"window_id": ids, "route": routes, "x_sim": [0.9, 0.1] * 3}))
    _part(tmp_path / "scores" / f"system={exp.target}",
          pa.table({"window_id": ids, "score": np.linspace(0, 1, 6), "route": routes, "scorer": ["small"] * 6}))
    _part(tmp_path / "windows" / f"system={exp.target}",
          pa.table({"window_id": ids, "first_file": [str(BGL)] * 6, "first_line": list(range(1, 7)),
                    "last_file": [str(BGL)] * 6, "last_line": list(range(2, 8)),
                    "label": pa.array([None] * 6, pa.int8())}))
    page = build_report(tmp_path, exp, ISSUE).read_text()
    header = page.split("<header>", 1)[1].split("</header>", 1)[0]
    assert re.search(r"abstained on 213 of 213 LLM calls \(100%", header)
    quiet = tmp_path / "quiet"
    for sub in ("routes", "scores", "windows"):
        (quiet / sub).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / sub).rename(quiet / sub)
    page = build_report(quiet, exp, {"distill": {"rounds": [{"llm_calls": 213}], "client": {"abstained": 2}}}
                        ).read_text()
    assert 'id="warnings"' not in page

"""The run report: raw lines from the shipped logs (plain, gzip, truncated gzip), ``metrics.json``, and the HTML
as headless Chromium renders it (plots decoded and drawn, log text escaped and inert).

Chromium (Debian's ``chromium`` package) is required: without it the Chromium tests fail, never skip.
Scores and x_sim are synthetic (fixed seed) over the real BGL_2k labels: these tests check the rendering.
"""

from __future__ import annotations

import gzip
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fusionlog.contracts import ROUND_KEYS
from fusionlog.evaluate.metrics import average_precision, binary_metrics
from fusionlog.evaluate.rawlines import OMITTED, PROBLEM, raw_lines, raw_lines_many
from fusionlog.evaluate.report import NOT_EVALUATED, ReportData, pr_curve, write_report

BGL = Path(__file__).resolve().parents[1] / "data" / "loghub_2k" / "BGL" / "BGL_2k.log.gz"
PLOTS = ("plot-xsim", "plot-rounds", "plot-pr", "plot-confusion")
XSS = ['<script>document.body.dataset.pwned = "script"</script>',
       "<img src=x onerror=\"document.body.dataset.pwned = 'img'\">",
       "</pre></details></td></tr></table><h1 id=escaped-markup>not a heading</h1>"]


def _bgl_lines() -> list[str]:
    with gzip.open(BGL, "rb") as fh:
        return [b.rstrip(b"\n").rstrip(b"\r").decode("utf-8", errors="replace") for b in fh]


# ---------------------------------------------------------------- raw lines


def test_raw_lines_plain_gzip_and_magic(tmp_path: Path) -> None:
    truth = _bgl_lines()
    plain = tmp_path / "BGL_2k.log"
    plain.write_bytes(gzip.decompress(BGL.read_bytes()))
    no_suffix = tmp_path / "BGL_2k.archive"  # gzip without .gz: recognised by its magic bytes
    shutil.copy(BGL, no_suffix)
    want = [(n, truth[n - 1]) for n in range(7, 12)]
    for f in (BGL, plain, no_suffix, f"file://{plain}"):
        assert raw_lines(str(f), 7, 11) == want
    assert raw_lines(str(BGL), 2000, 2000) == [(2000, truth[1999])]  # the last line has no newline


def test_raw_lines_long_window_and_long_lines() -> None:
    truth = _bgl_lines()
    got = raw_lines(str(BGL), 10, 200, max_lines=5, max_chars=40)
    assert [n for n, _ in got] == [10, 11, 12, 13, OMITTED, 200]
    assert got[4][1] == "… 186 lines omitted …"  # 191 lines: 4 + the last shown
    for n, text in got[:4] + got[5:]:
        assert len(text) == 40 and text.endswith("…") and truth[n - 1].startswith(text[:-1])
    assert raw_lines(str(BGL), 10, 14, max_lines=5) == [(n, truth[n - 1]) for n in range(10, 15)]


def test_raw_lines_huge_line_is_bounded(tmp_path: Path) -> None:
    f = tmp_path / "huge.log"
    f.write_bytes(b"first\n" + b"\xff" + b"x" * 3_000_000 + b"\r\nlast \xe2\x82\xac\n")
    got = raw_lines(str(f), 1, 3, max_chars=100)
    assert got[0] == (1, "first")
    assert got[1][0] == 2 and len(got[1][1]) == 100 and got[1][1].startswith("\ufffdxxx")
    assert got[2] == (3, "last €")


def test_raw_lines_problems_are_entries_not_errors(tmp_path: Path) -> None:
    truth = _bgl_lines()
    cut = tmp_path / "BGL_cut.log.gz"
    cut.write_bytes(BGL.read_bytes()[: BGL.stat().st_size // 2])
    got = raw_lines(str(cut), 1, 2000, max_lines=3000)
    lines, notes = [x for x in got if x[0] > 0], [x for x in got if x[0] < 0]
    assert 100 < len(lines) < 2000 and lines == [(n, truth[n - 1]) for n in range(1, len(lines) + 1)]
    assert len(notes) == 1 and notes[0][0] == PROBLEM and "EOFError" in notes[0][1]

    assert raw_lines(str(cut), 1990, 1995)[0][0] == PROBLEM  # the whole window lies beyond the cut
    missing = raw_lines(str(tmp_path / "gone.log"), 1, 5)
    assert len(missing) == 1 and missing[0][0] == PROBLEM and "FileNotFoundError" in missing[0][1]
    past = raw_lines(str(BGL), 1999, 2003)
    assert [n for n, _ in past] == [1999, 2000, PROBLEM] and "ends at line 2000" in past[-1][1]
    assert raw_lines(str(BGL), 5, 4)[0][0] == PROBLEM


def test_raw_lines_many_matches_single_reads(tmp_path: Path) -> None:
    plain = tmp_path / "BGL_2k.log"
    plain.write_bytes(gzip.decompress(BGL.read_bytes()))
    reqs = [(str(BGL), 300, 420), (str(plain), 5, 9), (str(BGL), 2, 4), (str(BGL), 3, 3),
            (str(BGL), 350, 360), (str(tmp_path / "gone"), 1, 1), (str(BGL), 1999, 2001)]
    assert raw_lines_many(reqs, max_lines=6) == [raw_lines(*r, max_lines=6) for r in reqs]


# ---------------------------------------------------------------- the report data


def _sample(tmp_path: Path, labels: bool = True, rounds: bool = True) -> ReportData:
    """A report over the 2000 BGL_2k lines (one window per line, real labels), synthetic x_sim and scores."""
    rng = np.random.default_rng(7)
    truth = _bgl_lines()
    y = np.array([0 if t.startswith("- ") else 1 for t in truth], np.int8)
    x_sim = np.clip(rng.normal(0.74, 0.09, len(y)) - 0.1 * y, 0, 1)
    tau = 0.7
    routes = np.where(x_sim >= tau, "general", "proprietary")
    score = np.clip(0.3 + 0.45 * y + rng.normal(0, 0.18, len(y)), 0, 1)
    pred = (score >= 0.5).astype(np.int8)
    keys = ("precision", "recall", "f1", "pr_auc", "balanced_accuracy")
    metrics = {name: {k: binary_metrics(y, s)[k] for k in keys} for name, s in (
        ("fusionlog", score), ("meta_align", np.clip(score + rng.normal(0, 0.25, len(y)), 0, 1)),
        ("router_novelty", 1 - x_sim), ("all_anomalous", np.ones(len(y))))}
    metrics["majority"] = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "pr_auc": float("nan"),
                           "balanced_accuracy": 0.5}

    evil = tmp_path / "evil.log"
    evil.write_text("kernel: ok\n" + "\n".join(XSS) + "\n", encoding="utf-8")
    top_idx = np.argsort(-score, kind="stable")[:5]
    reqs = [(str(BGL), int(i) + 1, int(i) + 1) for i in top_idx] + [(str(BGL), 100, 180), (str(evil), 1, 4)]
    raw = raw_lines_many(reqs, max_lines=8)
    top = []
    for k, ((file, first, last), lines) in enumerate(zip(reqs, raw, strict=True)):
        i = first - 1
        top.append({"window_id": f"{file}:{first}", "score": float(score[i]) if k < 5 else 0.9,
                    "route": str(routes[i]), "scorer": "llm" if routes[i] == "proprietary" else "small_model",
                    "label": int(y[i]) if k < 5 else None, "first_file": file, "first_line": first,
                    "last_line": last, "lines": lines,
                    "llm_reason": "hardware fault <b>repeated</b>" if routes[i] == "proprietary" else None})
    round_rows = [dict(zip(ROUND_KEYS, (r, 0.3 - 0.08 * r, 200 + 50 * r, 150 + 45 * r, 140 + 40 * r, 400 + 180 * r,
                                        0.7 + 0.07 * r, 0.55 + 0.1 * r, 200 - 40 * r, 40 * r, 30.5 - 5 * r),
                            strict=True)) for r in range(4)]
    round_rows[0]["f1_labeled"] = None
    return ReportData(
        title="FusionLog: HDFS + OpenStack → BGL", experiment="hdfs_openstack_to_bgl", target="BGL",
        sources=["HDFS", "OpenStack"], mode="fusionlog", created="2025-11-26 10:00 UTC", x_sim=x_sim,
        routes=routes, tau=tau, rounds=round_rows if rounds else [],
        y_true=y if labels else [], y_score=score if labels else [], y_pred=pred if labels else [],
        metrics=metrics if labels else {}, top_windows=top,
        notes=["Scores are synthetic: this report tests the renderer.", "<b>notes are text</b>"],
        counts={"windows": len(y), "general": int((routes == "general").sum()),
                "proprietary": int((routes == "proprietary").sum()), "llm_calls": 812, "cache_hits": 97,
                "wall_seconds": 1234.5})


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReportData]:
    tmp = tmp_path_factory.mktemp("report")
    data = _sample(tmp)
    return write_report(tmp / "report", data), data


def test_report_html_and_metrics_json(report: tuple[Path, ReportData]) -> None:
    path, data = report
    page = path.read_text(encoding="utf-8")
    for pid in PLOTS:
        assert len(re.findall(rf'<img id="{pid}" class="plot" alt="[^"]+" src="data:image/png;base64,', page)) == 1
    # nothing external: every src/href is inline data, a CSP forbids loading anything else, and no script
    assert all(u.startswith("data:") for u in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page))
    assert "default-src 'none'" in page and "<script" not in page.lower() and "<link" not in page.lower()
    # untrusted text is escaped
    assert html.escape(XSS[0]) in page and "&lt;b&gt;notes are text&lt;/b&gt;" in page
    assert "&lt;b&gt;repeated&lt;/b&gt;" in page and "… 73 lines omitted …" in page

    doc = json.loads((path.parent / "metrics.json").read_text(encoding="utf-8"))
    ev = binary_metrics(data.y_true, data.y_pred.astype(float))
    assert doc["evaluation"]["confusion"] == {k: ev[k] for k in ("tp", "fp", "fn", "tn")}
    assert doc["evaluation"]["pr_auc"] == pytest.approx(data.metrics["fusionlog"]["pr_auc"])
    assert doc["metrics"]["majority"]["pr_auc"] is None  # NaN -> null
    assert doc["route_split"] == {"general": data.counts["general"], "proprietary": data.counts["proprietary"],
                                  "windows": 2000}
    assert doc["tau"] == 0.7 and len(doc["rounds"]) == 4 and doc["rounds"][0]["f1_labeled"] is None
    assert doc["counts"]["llm_calls"] == 812 and len(doc["top_windows"]) == 7


def test_report_without_labels_or_rounds(tmp_path: Path) -> None:
    data = _sample(tmp_path, labels=False, rounds=False)
    data.tau = float("nan")  # unknown τ: no line, shown as –, null in metrics.json
    data.counts = {"windows": 2000, "LLM calls (distill)": 31, "llm cache hits (distill)": 4, "stage seconds": 75.0}
    path = write_report(tmp_path / "report", data)
    page = path.read_text(encoding="utf-8")
    assert page.count(NOT_EVALUATED) >= 2  # the summary card and the quality section
    assert "τ = –" in page and ">31</div>" in page and "cache hits 4" in page and "75.0 s" in page
    assert "no distillation rounds in mode fusionlog" in page
    assert 'id="plot-xsim"' in page and not any(f'id="{p}"' in page for p in PLOTS[1:])
    doc = json.loads((path.parent / "metrics.json").read_text(encoding="utf-8"))
    assert doc["evaluation"] is None and doc["rounds"] == [] and doc["metrics"] == {} and doc["tau"] is None


def test_report_on_a_target_with_no_anomalous_window(tmp_path: Path) -> None:
    data = _sample(tmp_path)
    normal = data.y_true == 0
    keep = np.flatnonzero(normal)  # BGL_2k's normal lines only: nothing to find
    data.x_sim, data.routes = data.x_sim[keep], data.routes[keep]
    data.y_true, data.y_score, data.y_pred = data.y_true[keep], data.y_score[keep], data.y_pred[keep]
    data.metrics = {"fusionlog": binary_metrics(data.y_true, data.y_score)}
    page = write_report(tmp_path / "report", data).read_text(encoding="utf-8")
    assert f"On {len(keep):,} labeled target windows (0 anomalous)" in page
    assert "recall and F1 are undefined" in page and "PR curve not evaluated" in page
    row = re.search(r'<tr class="ours">(.*?)</tr>', page).group(1)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row)
    assert cells[0] == "0.000" and cells[1] == "–" and cells[2] == "–"  # precision 0 (every flag wrong); recall, F1


def test_pr_curve_agrees_with_average_precision() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    score = np.round(rng.random(500), 2)  # ties
    recall, precision = pr_curve(y, score)
    assert recall[-1] == 1.0 and np.all(np.diff(recall) >= 0)
    assert float(np.sum(np.diff(np.r_[0, recall]) * precision)) == pytest.approx(average_precision(y, score))


def test_report_rejects_mismatched_arrays() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        ReportData(title="t", experiment="e", target="T", sources=[], mode="m", created="", x_sim=np.zeros(3),
                   routes=np.array(["general"] * 2), tau=0.5)


# ---------------------------------------------------------------- in headless Chromium

_CHECK = """<pre id="fl-check" hidden></pre><script>
addEventListener('load', () => setTimeout(() => {
  const out = {plots: {}, pwned: document.body.dataset.pwned || null, scripts: document.scripts.length,
    elementsInLogs: document.querySelectorAll('pre.log *:not(span)').length,
    injectedHeading: document.getElementById('escaped-markup') !== null,
    payloadShownAsText: [...document.querySelectorAll('pre.log')].some(p => p.textContent.includes(%s)),
    height: document.documentElement.scrollHeight};
  for (const img of document.querySelectorAll('img.plot')) {
    const r = img.getBoundingClientRect();
    out.plots[img.id] = {complete: img.complete, naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight,
                         x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height};
  }
  document.getElementById('fl-check').textContent = JSON.stringify(out);
}, 100));
</script>"""


def _chromium(tmp: Path, *args: str) -> str:
    exe = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if exe is None:
        pytest.fail("chromium not found: the report tests need headless Chromium "
                    "(Debian: apt-get install -y chromium)")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1",
           f"--user-data-dir={tmp / 'chromium-profile'}", "--virtual-time-budget=5000", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}"
    return proc.stdout


def _inspect(page: str, tmp: Path) -> dict:
    """Load the report with a checker script appended (and its CSP removed, so that an unescaped script in a log
    line would run) and return what the page saw: per plot whether it decoded and where it was drawn."""
    page, n = re.subn(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    assert n == 1
    before, end, after = page.rpartition("</body>")
    checker = tmp / "checked.html"
    checker.write_text(before + _CHECK % json.dumps(XSS[0]).replace("<", "\\u003c") + end + after, encoding="utf-8")
    dom = _chromium(tmp, "--window-size=1280,900", "--dump-dom", checker.as_uri())
    m = re.search(r'<pre id="fl-check"[^>]*>(.*?)</pre>', dom, re.S)
    assert m and m.group(1), f"the checker did not run; page tail: {dom[-1500:]}"
    return json.loads(html.unescape(m.group(1)))


def _undecoded(seen: dict) -> list[str]:
    """Plots that are missing, did not decode, or were drawn smaller than a readable plot."""
    bad = [p for p in PLOTS if p not in seen["plots"]]
    for pid, r in seen["plots"].items():
        if not (r["complete"] and r["naturalWidth"] >= 300 and r["naturalHeight"] >= 200
                and r["w"] >= 250 and r["h"] >= 150):
            bad.append(pid)
    return sorted(bad)


def _blank_on_screen(path: Path, seen: dict, tmp: Path) -> list[str]:
    """Screenshot the report as it is (CSP on) and return the plots whose area shows no drawn plot."""
    from PIL import Image

    shot = tmp / "shot.png"
    _chromium(tmp, f"--window-size=1280,{seen['height']}", f"--screenshot={shot}", path.as_uri())
    px = np.asarray(Image.open(shot).convert("RGB")).astype(np.int16)
    bad = []
    for pid, r in seen["plots"].items():
        crop = px[int(r["y"]):int(r["y"] + r["h"]), int(r["x"]):int(r["x"] + r["w"])]
        ink = (crop.min(axis=2) < 230).mean() if crop.size else 0.0
        colour = ((crop.max(axis=2) - crop.min(axis=2)) > 60).mean() if crop.size else 0.0
        if r["w"] < 250 or r["h"] < 150 or ink < 0.02 or colour < 0.003:
            bad.append(pid)
    return sorted(bad)


def test_report_renders_in_chromium(report: tuple[Path, ReportData], tmp_path: Path) -> None:
    path, _ = report
    seen = _inspect(path.read_text(encoding="utf-8"), tmp_path)
    assert _undecoded(seen) == [], seen["plots"]
    assert _blank_on_screen(path, seen, tmp_path) == []
    # the log lines' markup stayed text: nothing ran, no element was created, the payload is visible as text
    assert seen["pwned"] is None and seen["scripts"] == 1 and seen["elementsInLogs"] == 0
    assert not seen["injectedHeading"] and seen["payloadShownAsText"]


def test_broken_plot_is_caught(report: tuple[Path, ReportData], tmp_path: Path) -> None:
    """The checks above must fail when a plot is broken: corrupt the PR curve's PNG."""
    path, _ = report
    page, n = re.subn(r'(id="plot-pr"[^>]*src="data:image/png;base64,)[A-Za-z0-9+/]{64}', r"\1" + "A" * 64,
                      path.read_text(encoding="utf-8"))
    assert n == 1
    broken = tmp_path / "broken.html"
    broken.write_text(page, encoding="utf-8")
    seen = _inspect(page, tmp_path)
    assert _undecoded(seen) == ["plot-pr"]
    assert _blank_on_screen(broken, seen, tmp_path) == ["plot-pr"]


def test_fusion_notes_say_when_the_voting_views_never_agree(tmp_path: Path) -> None:
    """Measured on Android_2k (no labels, 2026-12-05): the LLM view flagged 153 lines, severity the 3 at level E, none
    of them the same; the fusion then flags nothing, and the report says why instead of only "0 flagged"."""
    from fusionlog.evaluate.run_report import fusion_notes
    from fusionlog.rundir import method_notes_file

    p = method_notes_file(tmp_path, "fusionlog")
    p.parent.mkdir(parents=True)
    views = {v: {"sensitivity": 0.3, "specificity": 0.9, "polarity": "agrees"} for v in ("llm-events", "severity")}
    notes = {"voting": ["llm-events", "severity"], "view_flags": {"llm-events": 153, "severity": 3}, "flagged": 0,
             "windows": 2000, "estimates": {"prior": 0.034, "views": views}, "checked": {}}
    p.write_text(json.dumps(notes))
    lines = fusion_notes(tmp_path, "fusionlog", {})
    assert any("llm-events 153, severity 3" in line for line in lines)
    assert any("flags no window" in line and "never the same" in line for line in lines)
    p.write_text(json.dumps({**notes, "flagged": 13}))  # where a majority forms, no such sentence
    assert not any("flags no window" in line for line in fusion_notes(tmp_path, "fusionlog", {}))


def test_inside_notes_show_the_sessions_inside_the_slice() -> None:
    from fusionlog.evaluate.run_report import inside_notes

    assert inside_notes({"labeled": 2000, "methods": {"fusionlog": {"all": {"f1": 0.6}}}}) == []  # no such subset
    ev = {"labeled": 1782, "inside_slice": {"rule": "RULE", "margin_s": 56.0, "windows": 303, "anomalous": 10,
                                            "signature_ceiling": {"best_f1": 0.182}},
          "methods": {"fusionlog": {"inside_slice": {"f1": 0.0}}, "all-anomalous": {"inside_slice": {"f1": 0.064}}}}
    (note,) = inside_notes(ev)
    assert "RULE; M = 56 s" in note and "303 of 1782" in note and "10 anomalous" in note and "0.182" in note
    assert "fusionlog 0.000" in note and "all-anomalous 0.064" in note


def test_a_method_that_flags_implausibly_many_windows_is_named_with_the_events_behind(
        hdfs_natural_run: Path) -> None:
    """On real HDFS blocks: a method flagging every block that holds the most common event (in most blocks) gets a
    warning naming that event; one flagging a few blocks gets none."""
    from fusionlog.evaluate.run_report import flag_warnings
    from fusionlog.modes import combine as rows
    from fusionlog.modes import write_scores
    from fusionlog.train.data import read_windows

    t = read_windows(hdfs_natural_run, "HDFS", ["window_id", "template_ids"])
    ids, tids = t["window_id"].to_pylist(), t["template_ids"].to_pylist()
    df: dict[int, int] = {}
    for x in tids:
        for e in set(x):
            df[e] = df.get(e, 0) + 1
    common = max((e for e in df if df[e] < len(ids)), key=df.get)  # the most common event that some block lacks
    assert 0.2 < df[common] / len(ids) < 1
    flags = {i: float(common in x) for i, x in zip(ids, tids, strict=True)}
    routes = dict.fromkeys(ids, "general")
    write_scores(hdfs_natural_run, "many", "HDFS", rows(ids, routes, flags, {}, "none", 0.5, None))
    few = {i: float(k < 10) for k, i in enumerate(ids)}
    write_scores(hdfs_natural_run, "few", "HDFS", rows(ids, routes, few, {}, "none", 0.5, None))
    lines = flag_warnings(hdfs_natural_run, "HDFS", ["many", "few", "absent"])
    assert len(lines) == 1 and lines[0].startswith("many flags ")
    import pyarrow.parquet as pq

    from fusionlog.rundir import table_dir

    tt = pq.read_table(table_dir(hdfs_natural_run, "templates", "HDFS")).to_pandas().set_index("template_id")
    assert tt.loc[common, "template"][:40] in lines[0] and "100% of them" in lines[0]


def test_why_a_window_was_flagged_reads_its_views_and_their_evidence() -> None:
    from fusionlog.evaluate.run_report import why

    assert why(None, None) is None
    text = why(["llm-events", "severity"], [("llm-events", 1.2), ("severity", 0.4), ("rarity", 0.0)])
    assert text == "flagged by llm-events, severity; evidence llm-events +1.20, severity +0.40"
    assert why([], [("pca", -0.3)]) == "flagged by no view on its own; evidence pca -0.30"

"""The human-readable report of a run: ``report/report.html`` and ``report/metrics.json``.

A pure renderer: :class:`ReportData` in, files out; nothing here reads a run directory. The HTML is
self-contained (inline CSS, plots as inline base64 PNGs, no script, a Content-Security-Policy that forbids
loading anything) and every piece of text from the data (log lines above all) is HTML-escaped.
Plots (ids): ``plot-xsim`` (x_sim by route with τ), ``plot-rounds`` (distillation rounds), ``plot-pr``
(PR curve) and ``plot-confusion`` (confusion matrix at the predicted labels); the last two only when the
target has labels, the rounds plot only when there are rounds.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fusionlog.contracts import ROUND_KEYS
from fusionlog.evaluate.metrics import average_precision, binary_metrics
from fusionlog.io import atomic_write_text

METRIC_KEYS = ("precision", "recall", "f1", "pr_auc", "balanced_accuracy")
_METRIC_NAMES = {"precision": "precision", "recall": "recall", "f1": "F1", "pr_auc": "PR-AUC",
                 "balanced_accuracy": "balanced accuracy", "best_f1": "best F1 (oracle)"}
ORACLE_KEYS = ("best_f1",)  # read the labels to choose the cut: shown apart, marked as an oracle
NOT_EVALUATED = "no labels: not evaluated"
ROUTE_COLORS = {"general": "#3b78c4", "proprietary": "#e07b24"}
_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'")
_PR_POINTS = 4000  # the PR curve is thinned to about this many points


@dataclass
class ReportData:
    """Everything the report shows. Arrays: one entry per target window (``x_sim``, ``routes``) or per labeled
    target window (``y_true``, ``y_score``, ``y_pred``; empty when the target has no labels).

    ``metrics``: method name -> precision/recall/f1/pr_auc/balanced_accuracy (baselines included);
    ``main_method`` names this run's row (highlighted; the others are the comparison).
    ``top_windows``: dicts with window_id, score, route, scorer, label (true label or None), first_file,
    first_line, last_line, lines (``[(line_no, text)]``, negative line numbers are notes; see
    :mod:`fusionlog.evaluate.rawlines`) and llm_reason (str or None).
    """

    title: str
    experiment: str
    target: str
    sources: list[str]
    mode: str
    created: str
    x_sim: np.ndarray
    routes: np.ndarray
    tau: float
    rounds: list[dict] = field(default_factory=list)
    y_true: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    y_score: np.ndarray = field(default_factory=lambda: np.zeros(0))
    y_pred: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    top_windows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int | float] = field(default_factory=dict)
    main_method: str = "fusionlog"
    warnings: list[str] = field(default_factory=list)  # shown as a banner in the header (e.g. LLM abstentions)
    cuts: dict[str, str] = field(default_factory=dict)  # method -> its label-free cut, in words

    def __post_init__(self) -> None:
        self.x_sim = np.asarray(self.x_sim, np.float64).ravel()
        self.routes = np.asarray(self.routes).ravel()  # str or object: only compared with "general"/"proprietary"
        self.y_true = np.asarray(self.y_true).astype(np.int8).ravel()
        self.y_score = np.asarray(self.y_score, np.float64).ravel()
        self.y_pred = np.asarray(self.y_pred).astype(np.int8).ravel()
        if len(self.routes) != len(self.x_sim):
            raise ValueError(f"routes ({len(self.routes)}) and x_sim ({len(self.x_sim)}) differ in length")
        if not len(self.y_true) == len(self.y_score) == len(self.y_pred):
            raise ValueError(f"y_true ({len(self.y_true)}), y_score ({len(self.y_score)}) and y_pred "
                             f"({len(self.y_pred)}) differ in length")


# ---------------------------------------------------------------- numbers


def route_split(data: ReportData) -> dict[str, int]:
    return {r: int((data.routes == r).sum()) for r in ("general", "proprietary")}


def evaluation(data: ReportData) -> dict[str, Any] | None:
    """Metrics of the predicted labels against the true ones (PR-AUC from the scores); None without labels."""
    if not len(data.y_true):
        return None
    ev = binary_metrics(data.y_true, data.y_pred.astype(np.float64), 0.5)
    ev["pr_auc"] = average_precision(data.y_true, data.y_score)
    return ev


def pr_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision at every distinct score threshold, highest threshold first."""
    y = np.asarray(y).astype(bool)
    order = np.argsort(-np.asarray(score, np.float64), kind="stable")
    s, ys = np.asarray(score, np.float64)[order], y[order]
    last = np.r_[s[1:] != s[:-1], True]
    tp = np.cumsum(ys)[last]
    n = np.flatnonzero(last) + 1
    return tp / max(int(y.sum()), 1), tp / n


def best_baseline(data: ReportData) -> tuple[str, float] | None:
    """The comparison row (any row but ``main_method``) with the highest finite F1."""
    rows = [(k, float(v.get("f1", math.nan))) for k, v in data.metrics.items() if k != data.main_method]
    rows = [r for r in rows if math.isfinite(r[1])]
    return max(rows, key=lambda r: r[1]) if rows else None


def _jsonable(obj: Any) -> Any:
    """Plain JSON values: numpy scalars/arrays unwrapped, NaN and infinities as null."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def metrics_document(data: ReportData) -> dict[str, Any]:
    """What ``metrics.json`` holds: every number of the report."""
    xs = data.x_sim
    quant = dict(zip(("min", "p05", "p25", "median", "p75", "p95", "max"),
                     np.quantile(xs, [0, 0.05, 0.25, 0.5, 0.75, 0.95, 1]).tolist() if len(xs) else [None] * 7,
                     strict=True))
    ev = evaluation(data)
    return _jsonable({
        "title": data.title, "experiment": data.experiment, "target": data.target, "sources": data.sources,
        "mode": data.mode, "created": data.created, "tau": data.tau,
        "route_split": {**route_split(data), "windows": len(xs)},
        "x_sim": {"n": len(xs), "mean": float(xs.mean()) if len(xs) else None, **quant},
        "warnings": list(data.warnings), "counts": data.counts, "rounds": data.rounds,
        "main_method": data.main_method, "metrics": data.metrics,
        "evaluation": None if ev is None else {
            "n_labeled": ev["n"], "positives": ev["positives"],
            "confusion": {k: ev[k] for k in ("tp", "fp", "fn", "tn")},
            **{k: ev[k] for k in METRIC_KEYS}},
        "top_windows": [{k: w.get(k) for k in ("window_id", "score", "route", "scorer", "label", "first_file",
                                               "first_line", "last_line")} for w in data.top_windows],
    })


# ---------------------------------------------------------------- plots

_RC = {"font.size": 9.5, "axes.titlesize": 11, "axes.titleweight": "bold", "axes.titlelocation": "left",
       "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.25,
       "legend.frameon": False, "legend.fontsize": 8.5, "figure.facecolor": "white"}


@contextmanager
def _figure(w: float, h: float) -> Iterator[Any]:
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(w, h), dpi=110, layout="constrained")
        FigureCanvasAgg(fig)
        yield fig


def _img(fig: Any, plot_id: str, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    b64 = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img id="{plot_id}" class="plot" alt="{_e(alt)}" src="data:image/png;base64,{b64}">'


def _bins(lo: float, hi: float, tau: float, n: int = 40) -> np.ndarray:
    """About ``n`` equal bins over [lo, hi] with τ (when known) on a bin edge (no bin mixes both routes)."""
    if not math.isfinite(tau):
        return np.linspace(lo, hi if hi > lo else lo + 1e-3, n + 1)
    lo, hi = min(lo, tau), max(hi, tau)
    w = (hi - lo) / n if hi > lo else 1e-3
    start = tau - math.ceil((tau - lo) / w - 1e-9) * w
    return start + w * np.arange(math.floor((hi - start) / w) + 2)


def plot_xsim(data: ReportData) -> str:
    split = route_split(data)
    n = max(len(data.x_sim), 1)
    with _figure(7.6, 3.3) as fig:
        ax = fig.subplots()
        xs = data.x_sim
        lo, hi = (float(xs.min()), float(xs.max())) if len(xs) else (0.0, 1.0)
        bins = _bins(lo, hi, data.tau)
        parts = [xs[data.routes == r] for r in ROUTE_COLORS]
        labels = [f"{r}: {split[r]:,} ({split[r] / n:.0%})" for r in ROUTE_COLORS]
        ax.hist(parts, bins=bins, stacked=True, color=list(ROUTE_COLORS.values()), label=labels, alpha=0.9)
        if math.isfinite(data.tau):
            ax.axvline(data.tau, color="#c53030", ls="--", lw=1.6, label=f"τ = {data.tau:.3f}")
        ax.set(xlabel="x_sim (similarity of a target window to the sources)", ylabel="windows",
               title=f"Routing of {len(xs):,} {data.target} windows")
        ax.legend(loc="upper left")
        alt = (f"Histogram of x_sim for {len(xs)} target windows: general {split['general']}, "
               f"proprietary {split['proprietary']}, tau {_fmt(data.tau)}")
        return _img(fig, "plot-xsim", alt)


def _round_values(rounds: list[dict], key: str) -> np.ndarray:
    return np.array([np.nan if r.get(key) is None else float(r[key]) for r in rounds])


def plot_rounds(data: ReportData) -> str:
    x = np.array([int(r.get("round", i)) for i, r in enumerate(data.rounds)])
    with _figure(7.6, 3.3) as fig:
        ax = fig.subplots()
        bars = ax.twinx()
        ax.set_zorder(bars.get_zorder() + 1)
        ax.patch.set_visible(False)
        bars.bar(x, _round_values(data.rounds, "kept_total"), width=0.5, color="#cbd5e0", label="kept (total)")
        bars.set_ylabel("windows kept (total)")
        bars.grid(False)
        bars.spines["right"].set_visible(True)
        for key, label, color in (("clean_ratio", "clean ratio", "#2f855a"), ("epsilon", "ε", "#805ad5"),
                                  ("f1_labeled", "F1 (labeled, eval only)", "#2b6cb0")):
            y = _round_values(data.rounds, key)
            if np.isfinite(y).any():
                ax.plot(x, y, marker="o", color=color, label=label, lw=2)
        ax.set(xlabel="round", ylabel="ratio / F1", ylim=(0, 1.05), xticks=x,
               title=f"Distillation: {len(x)} round{'s' if len(x) != 1 else ''}")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = bars.get_legend_handles_labels()
        fig.legend(h1 + h2, l1 + l2, loc="outside lower center", ncols=4)
        return _img(fig, "plot-rounds", f"Clean ratio, epsilon and F1 over {len(x)} distillation rounds, "
                                        "windows kept as bars")


def plot_pr(data: ReportData, ev: dict[str, Any]) -> str:
    recall, precision = pr_curve(data.y_true, data.y_score)
    if len(recall) > _PR_POINTS:
        keep = np.unique(np.linspace(0, len(recall) - 1, _PR_POINTS).astype(int))
        recall, precision = recall[keep], precision[keep]
    rate = ev["positives"] / max(ev["n"], 1)
    with _figure(4.6, 4.1) as fig:
        ax = fig.subplots()
        ax.plot(np.r_[0, recall], np.r_[precision[:1], precision], drawstyle="steps-pre", color="#2b6cb0", lw=2,
                label=f"scores (AP = {ev['pr_auc']:.3f})")
        ax.axhline(rate, color="#718096", ls="--", lw=1.2, label=f"random (positive rate {rate:.3f})")
        ax.plot([ev["recall"]], [ev["precision"]], "o", ms=9, color="#c53030",
                label=f"operating point (P {ev['precision']:.2f}, R {ev['recall']:.2f})")
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.04), title="Precision-recall")
        fig.legend(loc="outside lower center", ncols=1)
        return _img(fig, "plot-pr", f"Precision-recall curve, average precision {ev['pr_auc']:.3f}, "
                                    f"operating point precision {ev['precision']:.2f} recall {ev['recall']:.2f}")


def plot_confusion(ev: dict[str, Any]) -> str:
    m = np.array([[ev["tn"], ev["fp"]], [ev["fn"], ev["tp"]]])
    with _figure(3.9, 4.1) as fig:
        ax = fig.subplots()
        ax.imshow(m, cmap="Blues", vmin=0, vmax=max(int(m.max()), 1))
        ax.grid(False)
        for (i, j), v in np.ndenumerate(m):
            share = v / max(int(m[i].sum()), 1)
            dark = v > m.max() * 0.55
            ax.text(j, i, f"{v:,}\n{share:.0%} of row", ha="center", va="center", fontsize=11,
                    color="white" if dark else "#1a202c", fontweight="bold")
        names = ["normal", "anomalous"]
        ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=names, yticklabels=names, xlabel="predicted",
               ylabel="true", title="Confusion matrix")
        return _img(fig, "plot-confusion", f"Confusion matrix: true negatives {ev['tn']}, false positives "
                                           f"{ev['fp']}, false negatives {ev['fn']}, true positives {ev['tp']}")


# ---------------------------------------------------------------- HTML


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):,.{digits}f}"
    return _e(v)


def _duration(s: float) -> str:
    s = float(s)
    if s < 120:
        return f"{s:.1f} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min" if s >= 3600 else f"{int(s // 60)} min {s % 60:.0f} s"


def _count(counts: dict[str, int | float], *names: str) -> int | float | None:
    """The first count named like one of ``names`` (case, spaces and a trailing qualifier ignored:
    ``"LLM calls (distill)"`` matches ``llm_calls``)."""
    norm = {re.sub(r"[^a-z0-9]+", "_", k.lower()).strip("_"): v for k, v in counts.items()}
    for name in names:
        for k, v in norm.items():
            if (k == name or k.startswith(name + "_")) and v is not None:
                return v
    return None


def _card(label: str, value: str, sub: str = "") -> str:
    sub_html = f'<div class="sub">{sub}</div>' if sub else ""
    return f'<div class="card"><div class="label">{_e(label)}</div><div class="value">{value}</div>{sub_html}</div>'


def _summary(data: ReportData, ev: dict[str, Any] | None) -> str:
    split, n = route_split(data), len(data.x_sim)
    pct = {k: f"{v / n:.0%}" if n else "–" for k, v in split.items()}
    cards = [
        _card("Target", _e(data.target), f"sources: {_e(', '.join(data.sources)) or '–'}"),
        _card("Mode", _e(data.mode), f"experiment {_e(data.experiment)}"),
        _card("Windows", _fmt(n), f"τ = {_fmt(data.tau)}"),
        _card("Route split", f'<span class="general">{_fmt(split["general"])}</span> / '
                             f'<span class="proprietary">{_fmt(split["proprietary"])}</span>',
              f"general {pct['general']} · proprietary {pct['proprietary']}"),
    ]
    if ev is None:
        cards.append(_card("F1", '<span class="muted">–</span>', NOT_EVALUATED))
    else:
        best = best_baseline(data)
        vs = f"best baseline: {_e(best[0])} {best[1]:.3f}" if best else "no baseline"
        cards.append(_card("F1", f"{ev['f1']:.3f}", f"P {ev['precision']:.3f} · R {ev['recall']:.3f} · {vs}"))
        cards.append(_card("PR-AUC", _fmt(ev["pr_auc"]), f"{_fmt(ev['positives'])} anomalous of {_fmt(ev['n'])}"
                                                          " labeled"))
    calls = _count(data.counts, "llm_calls")
    if calls is None and data.rounds:
        calls = sum(int(r.get("llm_calls") or 0) for r in data.rounds)
    if calls is not None:
        hits = _count(data.counts, "cache_hits", "llm_cache_hits")
        cards.append(_card("LLM calls", _fmt(calls), f"cache hits {_fmt(hits)}"))
    wall = _count(data.counts, "wall_seconds", "wall_s", "seconds", "stage_seconds")
    if wall is not None:
        cards.append(_card("Wall time", _duration(wall)))
    return f'<section id="summary"><div class="cards">{"".join(cards)}</div></section>'


def _warnings(data: ReportData) -> str:
    """The header's warning banner (one line per warning); empty without warnings."""
    if not data.warnings:
        return ""
    items = "".join(f'<p class="warn"><strong>Warning:</strong> {_e(w)}</p>' for w in data.warnings)
    return f'<div id="warnings" class="warnings" role="alert">{items}</div>'


def _section(sid: str, title: str, body: str, intro: str = "") -> str:
    intro_html = f'<p class="intro">{intro}</p>' if intro else ""
    return f'<section id="{sid}"><h2>{_e(title)}</h2>{intro_html}{body}</section>'


def _routing(data: ReportData) -> str:
    body = plot_xsim(data) if len(data.x_sim) else '<p class="empty">no target windows</p>'
    intro = ("Each target window's similarity to the source systems (x_sim). Windows at or above τ take the "
             "general branch (the transferred small model); the rest are proprietary (the LLM branch).")
    return _section("routing", "Routing", body, intro)


def _rounds(data: ReportData) -> str:
    if not data.rounds:
        return _section("rounds", "Distillation rounds",
                        f'<p class="empty">no distillation rounds in mode {_e(data.mode)}: not evaluated</p>')
    keys = list(ROUND_KEYS) + sorted({k for r in data.rounds for k in r} - set(ROUND_KEYS))
    head = "".join(f"<th>{_e(k)}</th>" for k in keys)
    rows = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(k))}</td>" for k in keys) + "</tr>" for r in data.rounds)
    table = f'<div class="scroll"><table class="num"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'
    intro = ("Per round: the share of LLM labels the small model agrees with (clean ratio), the noise "
             "estimate ε, the windows kept for training, and F1 on the labeled target windows (evaluation only, "
             "never used by the run).")
    return _section("rounds", "Distillation rounds", plot_rounds(data) + table, intro)


def _metrics_table(data: ReportData) -> str:
    if not data.metrics:
        return '<p class="empty">no method metrics given</p>'
    names = sorted(data.metrics, key=lambda k: k != data.main_method)
    best = {}
    for k in METRIC_KEYS:
        vals = [float(v[k]) for v in data.metrics.values() if v.get(k) is not None and math.isfinite(float(v[k]))]
        best[k] = max(vals) if vals else None
    keys = [*METRIC_KEYS, *(k for k in ORACLE_KEYS if any(k in v for v in data.metrics.values()))]
    for k in keys[len(METRIC_KEYS):]:
        vals = [float(v[k]) for v in data.metrics.values() if v.get(k) is not None and math.isfinite(float(v[k]))]
        best[k] = max(vals) if vals else None
    cut = any(data.cuts.get(n) for n in names)
    head = ("<th>method</th>" + "".join(f"<th>{_METRIC_NAMES[k]}</th>" for k in keys)
            + ("<th>cut (chosen without labels)</th>" if cut else ""))
    rows = []
    for name in names:
        row = data.metrics[name]
        cells = []
        for k in keys:
            v = row.get(k)
            top = v is not None and best[k] is not None and math.isfinite(float(v)) and float(v) == best[k]
            cells.append(f'<td class="{"best" if top else ""}">{_fmt(None if v is None else float(v))}</td>')
        cls = ' class="ours"' if name == data.main_method else ""
        tag = ' <span class="tag">this run</span>' if name == data.main_method else ""
        if cut:
            cells.append(f'<td class="text">{_e(data.cuts.get(name, ""))}</td>')
        rows.append(f"<tr{cls}><th>{_e(name)}{tag}</th>{''.join(cells)}</tr>")
    return (f'<table class="num metrics"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
            '<p class="hint">Bold: best value per column. F1, precision and recall are at each method\'s own cut, '
            "chosen without labels; best F1 (oracle) reads the labels to choose the cut: a ceiling, not a result."
            "</p>")


def _quality(data: ReportData, ev: dict[str, Any] | None) -> str:
    if ev is None:
        body = (f'<p class="empty">{NOT_EVALUATED}: the target has no labels, so there is no PR curve and no '
                "confusion matrix.</p>")
        if data.metrics:
            body += _metrics_table(data)
        return _section("quality", "Detection quality", body)
    if ev["positives"] == 0 or ev["positives"] == ev["n"]:
        pr = f'<p class="empty">PR curve not evaluated: the labeled windows are all of one class ({ev["n"]:,}).</p>'
    else:
        pr = plot_pr(data, ev)
    plots = f'<div class="plots">{pr}{plot_confusion(ev)}</div>'
    intro = (f"On {ev['n']:,} labeled target windows ({ev['positives']:,} anomalous). The labels are read for "
             "this evaluation only.")
    if ev["positives"] == 0:  # nothing to find: recall and F1 are undefined, every flag is a false positive
        intro += (" None of them is anomalous, so recall and F1 are undefined (shown as –) and every window a method "
                  "flags is a false positive.")
        data = replace(data, metrics={m: {**v, "recall": None, "f1": None} for m, v in data.metrics.items()})
    return _section("quality", "Detection quality", _metrics_table(data) + plots, intro)


def _raw_block(w: dict, open_: bool = False) -> str:
    lines = w.get("lines") or []
    out = []
    for no, text in lines:
        if int(no) < 0:
            out.append(f'<span class="note">{_e(text)}</span>')
        else:
            out.append(f'<span class="ln">{int(no)}</span>{_e(text)}')
    shown = sum(1 for no, _ in lines if int(no) >= 0)
    where = f"{w.get('first_file') or '?'}:{w.get('first_line', '?')}–{w.get('last_line', '?')}"
    body = "\n".join(out) if out else '<span class="note">no raw lines</span>'
    return (f"<details{' open' * open_}><summary>raw lines ({shown} shown) · <code>{_e(where)}</code></summary>"
            f'<pre class="log">{body}</pre></details>')


def _label_badge(label: Any) -> str:
    try:
        known = int(label)
    except (TypeError, ValueError):  # None, NaN, pandas NA: no label
        return '<span class="muted">–</span>'
    return '<span class="badge bad">anomalous</span>' if known else '<span class="badge ok">normal</span>'


def _top_windows(data: ReportData) -> str:
    if not data.top_windows:
        return _section("windows", "Top anomalous windows", '<p class="empty">no window to show</p>')
    head = "".join(f"<th>{h}</th>" for h in ("#", "window", "score", "route", "scorer", "true label", "lines",
                                             "why (views, evidence) · LLM reason"))
    rows = []
    for i, w in enumerate(data.top_windows, 1):
        score = float(w.get("score", math.nan))
        pct = 0 if not math.isfinite(score) else round(min(max(score, 0.0), 1.0) * 100)
        route = str(w.get("route") or "")
        span = f"{w.get('first_line', '?')}–{w.get('last_line', '?')}"
        rows.append(
            f'<tr class="win"><td>{i}</td><td class="wid"><code>{_e(w.get("window_id", ""))}</code></td>'
            f'<td class="score"><div class="bar"><span style="width:{pct}%"></span></div>{_fmt(score)}</td>'
            f'<td><span class="badge {_e(route)}">{_e(route or "–")}</span></td><td>{_e(w.get("scorer") or "–")}</td>'
            f'<td>{_label_badge(w.get("label"))}</td><td class="nowrap">{_e(span)}</td>'
            f'<td class="reason">{_e(w.get("why") or "")}{"<br>" if w.get("why") and w.get("llm_reason") else ""}'
            f'{_e(w.get("llm_reason") or ("" if w.get("why") else "–"))}</td></tr>'
            f'<tr class="raw"><td></td><td colspan="7">{_raw_block(w, i == 1)}</td></tr>')
    cols = "".join(f'<col class="c-{c}">' for c in ("no", "win", "score", "route", "scorer", "label", "lines",
                                                    "reason"))
    table = (f'<table class="windows"><colgroup>{cols}</colgroup><thead><tr>{head}</tr></thead>'
             f'<tbody>{"".join(rows)}</tbody></table>')
    intro = "The highest-scored target windows, with the raw log lines behind them (click a window to open them)."
    return _section("windows", "Top anomalous windows", table, intro)


def _counts(data: ReportData) -> str:
    if not data.counts:
        return ""
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in data.counts.items())
    return _section("counts", "Counts", f'<table class="num kv"><tbody>{rows}</tbody></table>')


def _notes(data: ReportData) -> str:
    if not data.notes:
        return ""
    items = "".join(f"<li>{_e(n)}</li>" for n in data.notes)
    return _section("notes", "Notes", f"<ul>{items}</ul>")


_CSS = """
:root{--fg:#1a202c;--muted:#64748b;--line:#e2e8f0;--bg:#f6f8fb;--general:#3b78c4;--proprietary:#e07b24}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.5 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",
Arial,sans-serif}
main{max-width:1180px;margin:0 auto;padding:24px 28px 48px}
header h1{margin:0 0 2px;font-size:24px}
header .meta{color:var(--muted)}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:18px 22px;margin:18px 0}
section#summary{background:none;border:0;padding:0}
h2{margin:0 0 8px;font-size:17px}
.intro,.hint{color:var(--muted);margin:0 0 12px}
.hint{font-size:12px;margin-top:6px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:12px}
.card{background:#fff;border:1px solid var(--line);border-radius:10px;padding:12px 14px}
.card .label{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .value{font-size:22px;font-weight:650;margin:2px 0}
.card .sub{color:var(--muted);font-size:12.5px}
.general{color:var(--general)}.proprietary{color:var(--proprietary)}.muted{color:var(--muted)}
img.plot{display:block;max-width:100%;height:auto;margin:4px 0 10px}
.plots{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-end}
.plots img.plot{flex:0 1 auto;max-width:calc(50% - 9px);min-width:300px}
table{border-collapse:collapse;font-size:13px}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{color:var(--muted);font-weight:600;font-size:12px;border-bottom:2px solid var(--line)}
table.num td{text-align:right;font-variant-numeric:tabular-nums}
table.metrics tbody th{font-weight:500}
tr.ours{background:#ebf4ff}
td.best{font-weight:700}
.tag{font-size:11px;background:#3b78c4;color:#fff;border-radius:4px;padding:1px 5px;margin-left:4px}
.scroll{overflow-x:auto}
table.windows{width:100%;table-layout:fixed}
table.windows col.c-no{width:34px}table.windows col.c-win{width:27%}table.windows col.c-score{width:118px}
table.windows col.c-route{width:104px}table.windows col.c-scorer{width:100px}table.windows col.c-label{width:100px}
table.windows col.c-lines{width:96px}
tr.win td{border-bottom:0;padding-top:9px}
tr.raw td{padding-top:0}
td.wid code{font-size:12px;word-break:break-all}
td.reason{color:#334155;max-width:360px}
.nowrap{white-space:nowrap}
.score{white-space:nowrap;font-variant-numeric:tabular-nums}
.bar{display:inline-block;width:56px;height:8px;background:#edf2f7;border-radius:4px;margin-right:6px;
vertical-align:middle;overflow:hidden}
.bar span{display:block;height:100%;background:#c53030}
.badge{display:inline-block;font-size:11.5px;border-radius:10px;padding:0 8px;background:#edf2f7;color:#334155}
.badge.general{background:#e3eefb;color:#1e4e8c}.badge.proprietary{background:#fdeedd;color:#9c4a0a}
.badge.bad{background:#fde2e2;color:#9b1c1c}.badge.ok{background:#e3f5e8;color:#22663a}
details summary{cursor:pointer;color:var(--muted);font-size:12.5px}
details summary code{font-size:12px}
pre.log{margin:6px 0 4px;padding:10px 12px;background:#0f172a;color:#e2e8f0;border-radius:8px;overflow-x:auto;
font:12px/1.45 ui-monospace,"SFMono-Regular",Menlo,Consolas,"DejaVu Sans Mono",monospace;white-space:pre}
pre.log .ln{display:inline-block;min-width:3.5em;padding-right:1em;text-align:right;color:#64748b;user-select:none}
pre.log .note{color:#fbbf24;font-style:italic}
.empty{color:var(--muted);font-style:italic;margin:4px 0}
table.kv th{font-weight:500;color:#334155}
.warnings{margin:14px 0 0}
.warn{margin:0 0 8px;padding:10px 14px;background:#fff4e5;border:1px solid #f5b971;border-left:6px solid #c2410c;
border-radius:8px;color:#7c2d12;font-weight:600}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:24px}
"""


def render_html(data: ReportData) -> str:
    """The whole report as one HTML document (no script, nothing loaded from elsewhere)."""
    ev = evaluation(data)
    body = "".join([_summary(data, ev), _routing(data), _rounds(data), _quality(data, ev), _top_windows(data),
                    _counts(data), _notes(data)])
    sources = ", ".join(data.sources)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(data.title)}</title><style>{_CSS}</style></head>
<body><main>
<header><h1>{_e(data.title)}</h1>
<div class="meta">{_e(sources)} → {_e(data.target)} · mode {_e(data.mode)} · experiment {_e(data.experiment)}
 · {_e(data.created)}</div>{_warnings(data)}</header>
{body}
<footer>FusionLog report · self-contained: every plot is inline · numbers in metrics.json</footer>
</main></body></html>
"""


def write_report(out_dir: Path, data: ReportData) -> Path:
    """Write ``out_dir/report.html`` and ``out_dir/metrics.json`` (each atomically); return the HTML's path."""
    out_dir = Path(out_dir)
    doc = json.dumps(metrics_document(data), indent=2, allow_nan=False, ensure_ascii=False)
    page = render_html(data)
    atomic_write_text(out_dir / "metrics.json", doc + "\n")
    atomic_write_text(out_dir / "report.html", page)
    return out_dir / "report.html"

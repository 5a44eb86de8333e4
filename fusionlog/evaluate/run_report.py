"""The report stage of ``fusionlog run``: gathers routes, rounds, scores, metrics and the raw lines of the most
anomalous windows from the run directory, and renders ``<run>/report/report.html`` + ``metrics.json``."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from fusionlog.config import ExperimentConfig
from fusionlog.evaluate.rawlines import raw_lines_many
from fusionlog.evaluate.report import ReportData, write_report
from fusionlog.llm.judge import UNDECIDED
from fusionlog.rundir import (
    ingest_stats_file,
    method_notes_file,
    read_verdicts,
    report_dir,
    run_metrics_file,
    stages_dir,
    table_dir,
)

METRIC_KEYS = ("precision", "recall", "f1", "pr_auc", "balanced_accuracy")


def _top(run: Path, target: str, scores, n: int) -> list[dict]:  # noqa: ANN001
    """The ``n`` highest-scored windows with where they are and their raw lines."""
    if n <= 0:
        return []
    top = scores.sort_values(["score", "window_id"], ascending=[False, True]).head(n)
    w = pq.read_table(table_dir(run, "windows", target),
                      columns=["window_id", "first_file", "first_line", "last_file", "last_line", "label"]).to_pandas()
    w = w.set_index("window_id").loc[top["window_id"]]
    reasons: dict[str, str] = {}
    t = read_verdicts(run, target).select(["window_id", "reason"]).to_pandas().dropna()
    reasons = dict(zip(t["window_id"], t["reason"], strict=True))
    same_file = [(f, a, b if lf == f else a) for f, a, b, lf in
                 zip(w["first_file"], w["first_line"], w["last_line"], w["last_file"], strict=True)]
    lines = raw_lines_many(same_file, max_lines=30)
    out = []
    for (wid, row), (_, s), ls in zip(w.iterrows(), top.iterrows(), lines, strict=True):
        label = None if row["label"] is None or (isinstance(row["label"], float) and np.isnan(row["label"])) \
            else int(row["label"])
        out.append({"window_id": wid, "score": float(s["score"]), "route": s["route"], "scorer": s["scorer"],
                    "label": label, "first_file": row["first_file"], "first_line": int(row["first_line"]),
                    "last_line": int(row["last_line"]), "lines": ls, "llm_reason": reasons.get(wid),
                    "why": why(s.get("flagged_by"), s.get("evidence"))})
    return out


def why(flagged_by: object, evidence: object) -> str | None:
    """A fused window's explanation in words: the views whose own cut flags it, and each view's share of the
    fused log-odds (largest first; the vote's rows carry the views' scores instead); None for other methods."""
    views = [] if flagged_by is None or (isinstance(flagged_by, float) and np.isnan(flagged_by)) else list(flagged_by)
    ev = [] if evidence is None or (isinstance(evidence, float) and np.isnan(evidence)) else list(evidence)
    if not views and not ev:
        return None
    parts = [f"flagged by {', '.join(views)}" if views else "flagged by no view on its own"]
    ev = sorted(((str(k), float(v)) for k, v in ev if abs(float(v)) >= 0.005), key=lambda kv: -abs(kv[1]))
    if ev:
        parts.append("evidence " + ", ".join(f"{k} {v:+.2f}" for k, v in ev[:4]))
    return "; ".join(parts)


IMPLAUSIBLE = 0.2  # a method that flags more than this share of the windows gets a warning in the report


def flag_warnings(run: Path, target: str, methods: list[str], limit: float = IMPLAUSIBLE, events: int = 3
                  ) -> list[str]:
    """One warning per scored method that flags more than ``limit`` of the target's windows, naming the events
    behind most of its flags: those held by the largest share of the windows it flags (with that share, and the
    share of the windows it leaves alone that hold them too)."""
    from fusionlog.rundir import method_scores_dir
    from fusionlog.train.data import read_windows

    tids: dict | None = None
    text: dict = {}
    out = []
    for m in methods:
        d = method_scores_dir(run, m, target)
        if not d.is_dir():
            continue
        t = pq.read_table(d, columns=["window_id", "label"])
        flags = t["label"].to_numpy(zero_copy_only=False).astype(bool)
        if not len(flags) or flags.mean() <= limit:
            continue
        if tids is None:  # the windows' events are read only when some method needs a warning
            w = read_windows(run, target, ["window_id", "template_ids"])
            tids = dict(zip(w["window_id"].to_pylist(), w["template_ids"].to_pylist(), strict=True))
            tt = pq.read_table(table_dir(run, "templates", target), columns=["template_id", "template"])
            text = dict(zip(tt["template_id"].to_pylist(), tt["template"].to_pylist(), strict=True))
        held_in, held_out = {}, {}
        for wid, f in zip(t["window_id"].to_pylist(), flags, strict=True):
            for e in set(tids.get(wid) or []):
                (held_in if f else held_out)[e] = (held_in if f else held_out).get(e, 0) + 1
        n_in, n_out = int(flags.sum()), int((~flags).sum())
        top = sorted(held_in, key=lambda e: (-held_in[e], e))[:events]
        named = "; ".join(f"\"{str(text.get(e, e))[:80]}\" in {held_in[e] / n_in:.0%} of them"
                          f" ({held_out.get(e, 0) / max(n_out, 1):.0%} of the others)" for e in top)
        out.append(f"{m} flags {flags.mean():.0%} of the {len(flags)} windows ({n_in}): implausibly many for "
                   f"anomalies. The events behind most of its flags: {named}.")
    return out


def _num(d: dict, key: str) -> float | None:
    v = d.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def llm_abstention(summaries: dict[str, dict]) -> dict | None:
    """How often the run's LLM abstained, from the distill stage summary; None when it made no LLM decision.

    Per signature when every labeling pass (``llm_only`` and each round row) carries ``signatures`` and
    ``abstained`` (:meth:`fusionlog.llm.label.LabelStats.summary`); otherwise per LLM call: the client's
    ``abstained`` (or the passes') over the calls (``llm_only.calls`` + the rounds' ``llm_calls``, plus any
    ``abstained_cached``: abstentions remembered instead of asked again). Missing keys count as absent."""
    d = summaries.get("distill") or {}
    if not isinstance(d, dict):
        return None
    parts = [p for p in [d.get("llm_only"), *(d.get("rounds") or [])] if isinstance(p, dict)]
    client = d.get("client") if isinstance(d.get("client"), dict) else {}
    if parts and all(_num(p, "signatures") is not None and _num(p, "abstained") is not None for p in parts):
        abstained = sum(_num(p, "abstained") or 0 for p in parts)
        total, basis = sum(_num(p, "signatures") or 0 for p in parts), "labeling decisions"
    else:
        cached = sum(_num(p, "abstained_cached") or 0 for p in parts)
        total = sum((_num(p, "calls") if "calls" in p else _num(p, "llm_calls")) or 0 for p in parts) + cached
        own = _num(client, "abstained")
        abstained = (own + cached) if own is not None else sum(_num(p, "abstained") or 0 for p in parts)
        basis = "LLM calls"
    if total <= 0:
        return None
    abstained = min(abstained, total)
    return {"abstained": int(abstained), "total": int(total), "rate": abstained / total, "basis": basis,
            "refused": int(_num(client, "refused") or sum(_num(p, "refused") or 0 for p in parts))}


def abstention_banner(summaries: dict[str, dict], threshold: float) -> str | None:
    """The report header's warning when the run's LLM abstention rate reaches ``threshold``."""
    from fusionlog.llm.label import abstention_warning

    a = llm_abstention(summaries)
    if a is None:
        return None
    detail = (f"{a['refused']} refused by the server as invalid, e.g. a prompt over the model's context"
              if a["refused"] else "")
    msg = abstention_warning(a["abstained"], a["total"], threshold, a["basis"], detail)
    return None if msg is None else msg[0].upper() + msg[1:] + (
        ". The LLM-based modes rest on the remaining labels; check the LLM endpoint and the run's log.")


def _warn_rate(exp: ExperimentConfig) -> float:
    from fusionlog.llm.label import WARN_RATE

    try:
        from fusionlog.config import load_llm

        return load_llm(overrides=exp.llm).abstain_warn_rate
    except Exception:  # noqa: BLE001 (the report still renders, with the default threshold)
        return WARN_RATE


def fusion_notes(run: Path, mode: str, judge: dict) -> list[str]:
    """Lines on the LLM's event judgment and on how the fused method weighed its views (label-free estimates)."""
    out = []
    if judge.get("events"):
        out.append(f"LLM event judgment: {judge['events']} events of {judge.get('system')}, {judge.get('asked', 0)} "
                   f"asked, {judge.get('cache_hits', 0)} from cache, {judge.get('abstained', 0)} abstained; "
                   f"calibration {judge.get('calibration') or 'content-free'} (content-free P(yes) "
                   f"{float(judge.get('p_cf', 0.5)):.3f}); {judge.get('distinct', 0)} distinct P(yes), "
                   f"{judge.get('undecided', 0)} events undecided (posterior {UNDECIDED[0]}-{UNDECIDED[1]}: the view's "
                   "cut hangs on them)"
                   + (f"; {judge['interpreted']} interpretations generated first." if judge.get("interpreted")
                      else "."))
    if judge.get("triaged"):
        out.append(f"LLM triage of the {judge['triaged']} events in the upper group (whose failure is it: the "
                   f"system's, a user's or client's, or routine; asked in several orders of the kinds, "
                   f"{judge.get('triage_asked', 0)} asked): {judge.get('users', 0)} more likely a user's problem than "
                   "the system's fault, scored below the LLM view's cut; the others keep their score.")
    for system, x in (judge.get("sources") or {}).items():
        if "events" not in x:  # interpreted for the embedding only
            out.append(f"LLM interpretations of source {system}'s events (for the embedding): "
                       f"{x.get('interpreted', 0)} generated.")
            continue
        out.append(f"LLM event judgment of source {system} (the small model's event feature): {x.get('events', 0)} "
                   f"events, {x.get('asked', 0)} asked, {x.get('cache_hits', 0)} from cache, "
                   f"{x.get('abstained', 0)} abstained; calibration {x.get('calibration') or 'content-free'}"
                   + (f"; {x['interpreted']} interpretations generated first." if x.get("interpreted") else "."))
    p = method_notes_file(run, mode)
    if p.exists():
        n = json.loads(p.read_text())
        if n.get("combiner"):
            out += combiner_notes(mode, n)
        elif "why_vote" in n:
            out.append(f"{mode}: the vote of the label-free views decides here ({n['why_vote']}: what the sources' "
                       f"labels teach about {', '.join(n.get('sources') or []) or 'them'} does not apply to "
                       f"{n.get('family')}); {n.get('flagged', 0)} of {n.get('windows', 0)} windows flagged.")
        if "voting" in n:
            est = n.get("estimates") or {"views": {}, "prior": float("nan")}
            views = "; ".join(f"{v}: sensitivity {q['sensitivity']:.2f}, specificity {q['specificity']:.2f}, "
                              f"{q['polarity']}" for v, q in est["views"].items())
            out.append(f"{mode}: a window is anomalous when most of the voting views flag it "
                       f"({', '.join(n['voting']) or 'none'}); {n.get('flagged', 0)} of {n.get('windows', 0)} windows "
                       f"flagged. The views as estimated without labels (Dawid-Skene): {views or 'none'}; estimated "
                       f"anomaly share {est['prior']:.3f}.")
            each = n.get("view_flags") or {}
            if each:
                out.append("Windows each voting view flags on its own: "
                           + ", ".join(f"{v} {k}" for v, k in each.items()) + ".")
            alone = n.get("alone") or {}
            if alone.get("views"):
                out.append(f"Where windows are sessions, a window that breaks a count relation among the target's "
                           f"common events (Invariant Mining, `modes/invariants/`) is flagged on that evidence alone: "
                           f"{alone.get('flagged', 0)} windows break one, {alone.get('beyond_majority', 0)} of them "
                           "not flagged by the majority.")
            if not n.get("flagged") and any(each.values()):
                out.append(f"{mode} flags no window: the voting views flag windows but never the same ones, so no "
                           "majority forms. Each view's own flags are scored beside it (`modes/<view>/`), and the top "
                           "windows below are still ranked by the views' scores.")
            for v, c in (n.get("checked") or {}).items():
                out.append(f"{v} (not voting), checked against the fused decision without labels: Cohen's kappa "
                           f"{c['kappa']:.3f} ({c['polarity']}), flags {c['flagged_share']:.1%} of the windows.")
    return out


def combiner_notes(mode: str, n: dict) -> list[str]:
    """The learned fusion in words: what it was fitted on, its weights, its cut and how the sources fared at it,
    what it flags and which views are behind the flags."""
    c = n["combiner"]
    src = "; ".join(f"{s} ({x['windows']} windows, {x['anomalous']} anomalous: F1 {x['f1_out_of_fold']:.3f} out of "
                    "fold at the cut)" for s, x in (c.get("sources") or {}).items())
    out = [f"{mode}: the label-free views combined by a {c['kind']} combiner ({c['layout']} evidence) learned on the "
           f"labeled sources' windows, each source weighing the same: {src}. Cut: P >= {c['cut']:.3f}, the cut with "
           f"the best mean F1 over the sources scored out of fold (never the target's labels); {n.get('flagged', 0)} "
           f"of {n.get('windows', 0)} windows flagged, {n.get('undecided', 0)} within 0.01 of the cut (undecided)."]
    if c.get("weights"):
        out.append("Its log-odds weights: " + ", ".join(f"{k} {v:+.2f}" for k, v in c["weights"].items())
                   + f"; intercept {c['intercept']:+.2f}.")
    off = [v for v, a in (n.get("applies") or {}).items() if not a]
    if off:
        out.append(f"Views that do not apply to this target (no evidence from them): {', '.join(off)}.")
    for v, c in (n.get("checked") or {}).items():
        out.append(f"{v} (not a feature), checked against {mode}'s decision without labels: Cohen's kappa "
                   f"{c['kappa']:.3f} ({c['polarity']}), flags {c['flagged_share']:.1%} of the windows.")
    if n.get("views_behind_flags"):
        out.append("The view that contributed most, per flagged window: "
                   + ", ".join(f"{v} {k}" for v, k in n["views_behind_flags"].items()) + ".")
    return out


def relation_notes(run: Path, target: str, mode: str, limit: int = 5) -> list[str]:
    """The count relations the fused ``mode`` took alone (Invariant Mining's, ``modes/invariants/notes.json``), in
    words: ``count(A) = 3 x count(B)``, with the events' templates, where it holds and how many windows break it."""
    fused, inv = method_notes_file(run, mode), method_notes_file(run, "invariants")
    if not (fused.exists() and inv.exists()) or not (json.loads(fused.read_text()).get("alone") or {}).get("views"):
        return []
    from fusionlog.events import read_events

    n = json.loads(inv.read_text())
    rel = [(i, b) for i, b in zip(n.get("invariants", []), n.get("windows_breaking", []), strict=False)
           if len(i["events"]) > 1]
    if not rel:
        return []
    ev = read_events(run, target)
    text = dict(zip(ev["template_id"].to_pylist(), ev["template"].to_pylist(), strict=True))

    def side(pairs: list[tuple[int, int]]) -> str:
        return " + ".join(f"{'' if c == 1 else f'{c} x '}count(\u00ab{text.get(e, e)}\u00bb)" for e, c in pairs)

    out = [f"Count relations among {target}'s common events (Invariant Mining, {len(rel)} found):"]
    for i, b in sorted(rel, key=lambda x: -x[1])[:limit]:
        pairs = list(zip(i["events"], i["coef"], strict=True))
        left = [(e, c) for e, c in pairs if c > 0]
        right = [(e, -c) for e, c in pairs if c < 0]
        out.append(f"{side(left)} = {side(right)} in {float(i['support']):.1%} of the windows; {b} "
                   f"window{'' if b == 1 else 's'} break{'s' if b == 1 else ''} it.")
    return out


def views_notes(rounds: list[dict]) -> list[str]:
    """One line per round of the distillation on the agreeing views (kept-pool precision: evaluation only)."""
    out = []
    for r in rounds:
        cand, kept, total = r.get("candidates") or [0, 0], r.get("kept") or [0, 0], r.get("kept_total") or [0, 0]
        line = (f"Distillation on the agreeing views, round {r['round']}: ε {float(r['epsilon']):.2f}; candidates "
                f"(all voting views agree) {cand[0]} normal / {cand[1]} anomalous; kept {kept[0]} / {kept[1]} new, "
                f"{total[0]} / {total[1]} in all; confidence from the {r.get('confidence')}")
        if r.get("kept_precision") is not None:
            pa_, pn = r.get("kept_precision_anomalous"), r.get("kept_precision_normal")
            line += (f"; kept-pool precision {r['kept_precision']:.3f} (anomalous "
                     f"{'-' if pa_ is None else f'{pa_:.3f}'}, normal {'-' if pn is None else f'{pn:.3f}'}; "
                     f"evaluation only)")
        out.append(line + ".")
    return out


def inside_notes(ev: dict) -> list[str]:
    """Where the target's sessions were cut from a slice of a longer log: F1 of each method again on the sessions
    whose life cycle lies inside the slice (``eval/run.json``'s ``inside_slice``), with the rule."""
    sub = ev.get("inside_slice")
    if not sub:
        return []
    f1 = {m: v["inside_slice"]["f1"] for m, v in ev.get("methods", {}).items() if v.get("inside_slice")}
    ceiling = (sub.get("signature_ceiling") or {}).get("best_f1")
    return [f"Sessions inside the slice ({sub['rule']}; M = {sub['margin_s']:.0f} s): {sub['windows']} of "
            f"{ev.get('labeled', 0)} labeled windows, {sub['anomalous']} anomalous"
            + ("" if ceiling is None else f", label ceiling F1 {ceiling:.3f}") + ". F1 on them: "
            + (", ".join(f"{m} {v:.3f}" for m, v in f1.items()) or "none") + "."]


def ingest_warnings(run: Path, systems: list[str]) -> list[str]:
    """The ingest stage's warnings (e.g. a file whose timestamps did not parse) for each of ``systems``."""
    out = []
    for system in systems:
        p = ingest_stats_file(run, system)
        if p.exists():
            out += [f"Ingest of {system}: {w}" for w in json.loads(p.read_text()).get("warnings", [])]
    return out


def build_report(run: Path, exp: ExperimentConfig, summaries: dict[str, dict]) -> Path:
    run, target = Path(run), exp.target
    routes = pq.read_table(table_dir(run, "routes", target)).to_pandas()
    scores = pq.read_table(table_dir(run, "scores", target)).to_pandas()
    ev_path = run_metrics_file(run)
    ev = json.loads(ev_path.read_text()) if ev_path.exists() else {"methods": {}, "rounds": [], "labeled": 0}
    y, pred = np.zeros(0, np.int8), np.zeros(0, np.int8)
    s = np.zeros(0)
    if ev.get("labeled"):
        from fusionlog.evaluate.run_metrics import labeled

        ids, y, _ = labeled(run, target)
        sel = scores.set_index("window_id").loc[ids]
        s, pred = sel["score"].to_numpy(np.float64), sel["label"].to_numpy(np.int8)
    th = exp.run.threshold
    metrics = {m: {k: v["all"][k] for k in (*METRIC_KEYS, "best_f1") if k in v["all"]}
               for m, v in ev["methods"].items()}
    cuts = {m: v.get("cut", "") for m, v in ev["methods"].items()}
    distill = summaries.get("distill", {})
    route = summaries.get("route", {})
    counts: dict[str, int | float] = {"windows": len(routes), "general": int((routes["route"] == "general").sum()),
                                      "proprietary": int((routes["route"] == "proprietary").sum()),
                                      "kept pseudo-labels": int(distill.get("kept", 0) or 0)}
    client = distill.get("client") or {}
    if client:
        counts["llm requests"] = int(client.get("requests", 0))
        counts["llm abstained"] = int(client.get("abstained", 0))
    from fusionlog.stages import from_json

    judge = summaries.get("judge") or {}
    judged = from_json("judge", judge) if judge else None
    counts["llm calls (events)"] = judged.calls() if judged else 0
    counts["llm calls (distill)"] = int(sum(r.get("llm_calls", 0) for r in distill.get("rounds", [])))
    counts["llm cache hits (distill)"] = int(sum(r.get("cache_hits", 0) for r in distill.get("rounds", [])))
    abstention = llm_abstention(summaries)
    if abstention is not None:
        counts["llm abstention rate"] = round(abstention["rate"], 4)
    banner = abstention_banner(summaries, _warn_rate(exp))
    stage_seconds = 0.0
    for p in stages_dir(run).glob("*.json"):
        stage_seconds += float(json.loads(p.read_text()).get("seconds", 0.0))
    counts["stage seconds"] = round(stage_seconds, 1)
    notes = [f"Scores: mode {exp.run.mode}; threshold {th}; the target's labels are read by the evaluate stage only."]
    if not ev.get("labeled"):
        notes.append(f"{target} has no labels here: the report shows scores, not their quality.")
    notes += fusion_notes(run, exp.run.mode, judge)
    notes += relation_notes(run, exp.target, exp.run.mode)
    notes += views_notes(ev.get("views_rounds") or distill.get("views_rounds") or [])
    notes += inside_notes(ev)
    if exp.llm.get("backend") == "openai" and "test-double" in str(exp.llm.get("model", "")):
        notes.append("The LLM of this run is a TEST DOUBLE (a keyword rule): its labels are not an LLM's.")
    data = ReportData(
        title=f"FusionLog: {' + '.join(exp.sources)} → {target}", experiment=exp.name, target=target,
        sources=list(exp.sources), mode=exp.run.mode,
        created=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        x_sim=routes["x_sim"].to_numpy(np.float64), routes=routes["route"].to_numpy(),
        tau=float(route.get("tau", np.nan)),
        rounds=ev.get("rounds") or distill.get("rounds", []), y_true=y, y_score=s, y_pred=pred,
        metrics=metrics, top_windows=_top(run, target, scores, exp.run.top_windows), notes=notes, counts=counts,
        main_method=exp.run.mode, cuts=cuts,
        warnings=[*([banner] if banner else []), *ingest_warnings(run, [target, *exp.sources]),
                  *flag_warnings(run, target, list(ev["methods"]) or [exp.run.mode])])
    return write_report(report_dir(run), data)

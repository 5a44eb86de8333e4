"""An experiment (``conf/experiments/<name>.yaml``) wired from the stages: prepare = ingest every dataset,
embed the templates, route the target's windows. Training and evaluation follow in ``fusionlog evaluate``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fusionlog.config import DatasetSpec, ExperimentConfig, load_embed, load_ingest, load_system

REPO = Path(__file__).resolve().parents[1]


def resolve(path: str) -> str:
    """A dataset path: absolute or URI as given; relative to the working directory, else to the repo."""
    if "://" in path or Path(path).is_absolute() or Path(path).exists() or any(c in path for c in "*?["):
        return path
    return str(REPO / path)


def _seq(spec: str) -> str:
    head, sep, rest = spec.partition(":")
    return resolve(head) + sep + rest


@dataclass
class Prepared:
    datasets: dict[str, str] = field(default_factory=dict)  # name -> one-line summary
    embedded: int = 0
    route: object = None


def ingest_dataset(name: str, spec: DatasetSpec, run: Path, progress=None,  # noqa: ANN001
                   say: Callable[[str], None] | None = None) -> str:
    """Ingest one dataset under its name; returns a one-line summary. ``progress``: a progress bar factory; ``say``
    gets ingest's notes (e.g. a target that fell into too few windows to tell anything apart)."""
    if spec.kind == "sequences":
        from fusionlog.ingest.sequences import ingest_sequences, parse_spec

        res = ingest_sequences(name, Path(resolve(spec.templates or "")), [parse_spec(_seq(s)) for s in spec.sequences],
                               run)
        return (f"{res.windows} windows ({res.anomalous_windows} anomalous), {res.templates} templates, "
                f"{len(res.bad_lines)} bad lines, {res.sampled_out} sampled out")
    from fusionlog.ingest.stage import ingest

    system = load_system(spec.system or name).model_copy(update={"name": name})
    res = ingest(system, [resolve(p) for p in spec.inputs], run, labels=[resolve(p) for p in spec.labels] or None,
                 window=spec.window, cfg=load_ingest(), progress=progress)
    if say:
        for note in res.notes:
            say(f"note: {name}: {note}")
        for warning in res.warnings:
            say(f"WARNING: {name}: {warning}")
    anom = "unlabeled" if res.anomalous_windows is None else f"{res.anomalous_windows} anomalous"
    return (f"{res.windows} windows ({anom}), {res.templates} templates, {res.lines} lines, "
            f"{res.quarantined} quarantined")


def levels_maps(exp: ExperimentConfig) -> dict[str, dict[str, str]]:
    """Each dataset's ``levels:`` map (raw logs; event-sequence sets have no levels)."""
    return {name: dict(load_system(spec.system or name).levels) if spec.kind == "raw" else {}
            for name, spec in exp.datasets.items()}


def window_kinds(exp: ExperimentConfig) -> dict[str, str]:
    """Each dataset's kind of window: ``session`` (a block, an instance, a job: event-sequence sets are sessions),
    ``fixed``, ``time`` or ``line`` (raw logs: the dataset's window policy, or its system's default)."""
    return {name: load_system(spec.system or name).window(spec.window).kind if spec.kind == "raw" else "session"
            for name, spec in exp.datasets.items()}


def prepare(exp: ExperimentConfig, run: Path, force: bool = False) -> Prepared:
    """Ingest the datasets (those not in ``run`` yet, or all with ``force``), write their ``events/``, embed,
    route. (The LLM's event scores, which the small model's ``llm`` feature reads, come from the judge stage:
    ``fusionlog run <experiment> --until judge``.)"""
    from fusionlog.embed.stage import embed
    from fusionlog.events import write_events
    from fusionlog.route.stage import route
    from fusionlog.rundir import table_dir

    out = Prepared()
    for name, spec in exp.datasets.items():
        if not force and table_dir(run, "windows", name).is_dir():
            out.datasets[name] = "already ingested"
            continue
        out.datasets[name] = ingest_dataset(name, spec, run)
    for name, levels in levels_maps(exp).items():
        write_events(run, name, levels)
    out.embedded = embed(run, load_embed(overrides=exp.embed)).encoded
    out.route = route(run, exp.sources, exp.target, exp.route, sweep=True)
    return out

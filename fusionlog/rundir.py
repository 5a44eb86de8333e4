"""The run directory: every path in it (one function each; no other module spells one) and the tables that have
one reader and one writer here. The other tables are still written by their stages (docs/architecture.md), at
the paths given here.

=========================================  =====================================================================
path (under ``<run>/``)                    function
=========================================  =====================================================================
``<table>/``, ``<table>/system=<s>/``      :func:`table_dir` (``lines``, ``templates``, ``windows``,
                                           ``quarantine``, ``routes``, ``scores``, ``llm_labels``)
``llm_labels/system=<target>/``            :func:`llm_labels_dir` (read and written here only)
``event_scores/system=<target>/``          the LLM's event judgment (written by the judge stage through
                                           :func:`fusionlog.llm.judge.write_event_scores`, read by its
                                           :func:`~fusionlog.llm.judge.read_event_scores`)
``event_triage/system=<target>/``          the LLM's triage of the target's failure events (written by the judge
                                           stage through :func:`fusionlog.llm.triage.write_triage`, read by its
                                           :func:`~fusionlog.llm.triage.read_triage`)
``interpretations/system=<s>/``            the LLM's interpretation of each event, when asked (written by the
                                           judge stage through :func:`fusionlog.llm.interpret.write_interpretations`)
``modes/<method>/scores/system=<t>/``      :func:`method_scores_dir`
``modes/<method>/notes.json``              :func:`method_notes_file`
``state/templates_<system>.json``          :func:`state_file` (the template miner's state)
``stats/ingest_<system>.json``             :func:`ingest_stats_file`
``stats/route_<target>.json``              :func:`route_stats_file` (holds τ)
``.tmp-work-<system>/[<part>]``            :func:`ingest_scratch` (ingest's scratch space, removed after)
``lancedb/``                               :func:`lancedb_dir` (template vectors, knowledge base)
``models/<target>/<name>/``                :func:`model_dir` (``models/_sources/<name>/`` without target)
``ray_train/``                             :func:`train_storage` (Ray Train's storage path)
``llm_cache.sqlite``                       :func:`llm_cache_file`
``distill/<target>/``                      :func:`distill_dir`
``distill/<target>/rounds.json``           :func:`distill_rounds_file`
``distill/<target>/kept/``                 :func:`distill_kept_dir`
``eval/``                                  :func:`eval_dir`
``eval/run.json``                          :func:`run_metrics_file`
``eval/run-s<seed>.json``                  :func:`seed_metrics_file`
``eval/results.json``                      :func:`results_file`
``eval/<experiment>.json``, ``.md``        :func:`experiment_eval_file` (``fusionlog evaluate``)
``report/``                                :func:`report_dir` (``report.html``, ``metrics.json``)
``stages/``, ``stages/<stage>.json``       :func:`stages_dir`, :func:`stage_marker`
``logs/fusionlog.log``                     :func:`log_file`
``experiment.json``                        :func:`experiment_file`
=========================================  =====================================================================

``llm_labels/system=<target>/``: the LLM's verdicts on the target's windows, one row per (window, purpose):
``llm-only`` (every window), ``generallog`` (the proprietary windows, round 1 of the distillation) and ``label``
(``fusionlog label``). A writer replaces the rows of its own purposes only, so ``fusionlog label`` into a run
does not erase the verdicts its detect stage reads.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fusionlog.io import atomic_dir

VERDICTS = pa.schema([("window_id", pa.string()), ("label", pa.string()), ("confidence", pa.float32()),
                      ("reason", pa.string()), ("purpose", pa.string()), ("signature", pa.string())])


PARTITIONED = ("lines", "templates", "windows", "quarantine", "routes", "scores", "llm_labels", "events",
               "event_scores", "event_triage", "interpretations")
NO_TARGET = "_sources"  # the models/ folder of a model trained without a target


def table_dir(run: Path, table: str, system: str | None = None) -> Path:
    """``<table>/`` of a Hive-partitioned table (:data:`PARTITIONED`), or its ``system=<system>/`` partition."""
    if table not in PARTITIONED:
        raise ValueError(f"{table!r} is not a partitioned table of the run directory ({', '.join(PARTITIONED)})")
    d = Path(run) / table
    return d if system is None else d / f"system={system}"


def write_partition(run: Path, table: str, system: str, rows: pa.Table) -> None:
    """``<table>/system=<system>/part-0.parquet``, replaced atomically (a table written whole per system)."""
    with atomic_dir(table_dir(run, table, system)) as tmp:
        tmp.mkdir()
        pq.write_table(rows, tmp / "part-0.parquet")


def read_partition(run: Path, table: str, system: str, columns: list[str], missing: str) -> pa.Table:
    """The ``columns`` of ``<table>/system=<system>/``; ``missing`` says what writes it when it is not there."""
    d = table_dir(run, table, system)
    if not d.is_dir():
        raise FileNotFoundError(f"{d} not found: {missing}")
    return pq.read_table(d, columns=columns)


def llm_labels_dir(run: Path, target: str) -> Path:
    """``llm_labels/system=<target>/``: the LLM's verdicts (:func:`read_verdicts`, :func:`write_verdicts`)."""
    return table_dir(run, "llm_labels", target)


def method_scores_dir(run: Path, method: str, target: str) -> Path:
    """``modes/<method>/scores/system=<target>/``: one detection method's scores of the target's windows."""
    return Path(run) / "modes" / method / "scores" / f"system={target}"


def method_table_dir(run: Path, method: str, name: str) -> Path:
    """``modes/<method>/<name>/``: a table a method keeps beside its scores (e.g. the learned fusion's training
    set); written by the detect stage."""
    return Path(run) / "modes" / method / name


def method_notes_file(run: Path, method: str) -> Path:
    """``modes/<method>/notes.json``: what a method keeps beside its scores (e.g. the fusion's view estimates)."""
    return Path(run) / "modes" / method / "notes.json"


def state_file(run: Path, system: str) -> Path:
    """``state/templates_<system>.json``: the template miner's state after ingesting ``system``."""
    return Path(run) / "state" / f"templates_{system}.json"


def ingest_stats_file(run: Path, system: str) -> Path:
    """``stats/ingest_<system>.json``: the ingest stage's counts of ``system``."""
    return Path(run) / "stats" / f"ingest_{system}.json"


def route_stats_file(run: Path, target: str) -> Path:
    """``stats/route_<target>.json``: the router's result (τ, windows per branch)."""
    return Path(run) / "stats" / f"route_{target}.json"


def ingest_scratch(run: Path, system: str, part: str | None = None) -> Path:
    """``.tmp-work-<system>/`` (or its ``<part>``): ingest's scratch space, removed when the ingest ends."""
    d = Path(run) / f".tmp-work-{system}"
    return d if part is None else d / part


def lancedb_dir(run: Path) -> Path:
    """``lancedb/``: the LanceDB store (template vectors; the LLM's knowledge base)."""
    return Path(run) / "lancedb"


def model_dir(run: Path, target: str | None, name: str) -> Path:
    """``models/<target>/<name>/`` (``models/_sources/<name>/`` without a target): one trained small model."""
    return Path(run) / "models" / (target or NO_TARGET) / name


def train_storage(run: Path) -> Path:
    """``ray_train/``: Ray Train's storage path (checkpoints of the trainings in progress)."""
    return Path(run) / "ray_train"


def llm_cache_file(run: Path) -> Path:
    """``llm_cache.sqlite``: the LLM's verdicts and abstentions, by prompt."""
    return Path(run) / "llm_cache.sqlite"


def distill_dir(run: Path, target: str) -> Path:
    """``distill/<target>/``: the distillation's outputs."""
    return Path(run) / "distill" / target


def distill_rounds_file(run: Path, target: str) -> Path:
    """``distill/<target>/rounds.json``: one object per distillation round."""
    return distill_dir(run, target) / "rounds.json"


def distill_kept_dir(run: Path, target: str) -> Path:
    """``distill/<target>/kept/``: the pseudo-labels the distillation kept."""
    return distill_dir(run, target) / "kept"


def views_rounds_file(run: Path, target: str) -> Path:
    """``distill/<target>/views_rounds.json``: one object per round of the distillation on the agreeing views."""
    return distill_dir(run, target) / "views_rounds.json"


def views_kept_dir(run: Path, target: str) -> Path:
    """``distill/<target>/views_kept/``: the pseudo-labels the views' distillation kept (window, label, round)."""
    return distill_dir(run, target) / "views_kept"


def eval_dir(run: Path) -> Path:
    """``eval/``: the metrics of the run (evaluate stage, ``fusionlog results``, ``fusionlog evaluate``)."""
    return Path(run) / "eval"


def run_metrics_file(run: Path) -> Path:
    """``eval/run.json``: the evaluate stage's metrics of every scored method."""
    return eval_dir(run) / "run.json"


def seed_metrics_file(run: Path, seed: int) -> Path:
    """``eval/run-s<seed>.json``: ``fusionlog results``' copy of one seed's ``eval/run.json``."""
    return eval_dir(run) / f"run-s{seed}.json"


def results_file(run: Path) -> Path:
    """``eval/results.json``: ``fusionlog results``' summary over the seeds."""
    return eval_dir(run) / "results.json"


def experiment_eval_file(run: Path, experiment: str, suffix: str = ".json") -> Path:
    """``eval/<experiment>.json`` (``suffix=".md"``: the table): ``fusionlog evaluate``'s comparison."""
    return eval_dir(run) / f"{experiment}{suffix}"


def report_dir(run: Path) -> Path:
    """``report/``: the human-readable report (``report.html``, ``metrics.json``)."""
    return Path(run) / "report"


def stages_dir(run: Path) -> Path:
    """``stages/``: the markers of finished stages."""
    return Path(run) / "stages"


def stage_marker(run: Path, stage: str) -> Path:
    """``stages/<stage>.json``: the marker of a finished stage (inputs' hash, seconds, typed summary)."""
    return stages_dir(run) / f"{stage}.json"


def log_file(run: Path) -> Path:
    """``logs/fusionlog.log``: Ray, Serve, vLLM and Spark chatter (unless ``--verbose``)."""
    return Path(run) / "logs" / "fusionlog.log"


def experiment_file(run: Path) -> Path:
    """``experiment.json``: the experiment a ``fusionlog run`` directory was made with."""
    return Path(run) / "experiment.json"


def verdict_rows(verdicts: dict, purpose: str, signatures: dict[str, str] | None = None) -> dict[str, list]:
    """Columns of :data:`VERDICTS` for ``{window_id: Verdict | None}`` (None: abstained; label null)."""
    rows: dict[str, list] = {k: [] for k in VERDICTS.names}
    for wid, v in verdicts.items():
        rows["signature"].append((signatures or {}).get(wid))
        rows["window_id"].append(wid)
        rows["label"].append(v.label if v else None)
        rows["confidence"].append(v.confidence if v else None)
        rows["reason"].append(v.reason if v else None)
        rows["purpose"].append(purpose)
    return rows


def read_verdicts(run: Path, target: str) -> pa.Table:
    """Every verdict row of ``target`` (an empty table before any)."""
    d = llm_labels_dir(run, target)
    if not d.is_dir():
        return VERDICTS.empty_table()
    t = pq.read_table(d)
    for name, fill in (("purpose", "label"), ("signature", None)):  # tables of older versions
        if name not in t.column_names:
            t = t.append_column(name, pa.array([fill] * t.num_rows, pa.string()))
    return t.select(VERDICTS.names).cast(VERDICTS)


def write_verdicts(run: Path, target: str, rows: dict[str, list]) -> None:
    """Replace the verdicts of the purposes in ``rows`` (columns of :data:`VERDICTS`); other purposes stay."""
    new = pa.table(rows, schema=VERDICTS)
    old = read_verdicts(run, target)
    mine = pa.array(sorted(set(new["purpose"].to_pylist())), pa.string())
    keep = old.filter(pc.invert(pc.is_in(old["purpose"], value_set=mine)))
    with atomic_dir(llm_labels_dir(run, target)) as tmp:
        tmp.mkdir()
        pq.write_table(pa.concat_tables([keep, new]), tmp / "part-0.parquet")

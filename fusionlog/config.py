"""Typed configuration (pydantic) loaded from YAML files under ``conf/``.

Every model forbids unknown keys, so a typo in a YAML file fails with the file and the key path.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A configuration problem, with the file and key it comes from."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from exc
    return value


class MaskRule(_Model):
    """Replace what ``pattern`` matches by ``replacement``.

    ``scope: token`` (default) applies the rule to each whitespace-separated token, once per distinct
    token (cached), and keeps the token count; ``scope: line`` applies it to the whole message and may
    merge tokens (use only for variables that contain spaces).
    """

    name: str
    pattern: str
    replacement: str = "<*>"
    scope: Literal["token", "line"] = "token"

    _v = field_validator("pattern")(_check_regex)


class DrainConfig(_Model):
    """Drain3 parameters (see drain3.drain.Drain)."""

    depth: int = Field(4, ge=3)
    sim_th: float = Field(0.4, ge=0.0, le=1.0)
    max_children: int = Field(100, ge=2)
    max_clusters: int | None = Field(None, ge=1)
    parametrize_numeric_tokens: bool = True


TIMESTAMP_NAMED = ("iso8601", "rfc3339", "epoch", "epoch_ms", "epoch_us", "epoch_ns")


class TimestampConfig(_Model):
    """How to build a timestamp from header fields: joined by a space, then parsed.

    ``format`` is a ``strptime`` format (fractions of a second beyond microseconds are cut to microseconds, so
    ``%f`` reads nanoseconds), ``iso8601`` / ``rfc3339`` (``2016-10-06T00:17:09.669794202Z``: ``T`` or a space,
    any fraction, ``Z`` or an offset, converted to UTC), or ``epoch`` / ``epoch_ms`` / ``epoch_us`` / ``epoch_ns``
    (seconds, milli-, micro-, nanoseconds since 1970 UTC; may be fractional). Times are kept in UTC when they carry
    a zone, as written when they do not.
    """

    fields: list[str]
    format: str

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value not in TIMESTAMP_NAMED and "%" not in value:
            raise ValueError(f"timestamp format {value!r} is neither a strptime format (with %-directives) nor one "
                             f"of {', '.join(TIMESTAMP_NAMED)}")
        return value


class EnvelopeConfig(_Model):
    """Lines wrapped by a container runtime or a log shipper; ``log_format`` then parses the wrapped message.

    - ``json``: one JSON object per line (docker's json-file, Fluent Bit, Vector, journald's JSON export, a
      structured logger). ``message`` is the JSON path of the line the application wrote (default ``log``);
      ``fields`` names JSON paths as header fields (``{Time: time, Pod: kubernetes.pod_name}``), usable in
      ``fields:``, ``timestamp:``, ``sessions:`` and line labels like the fields of ``log_format``. A path is a
      key, or keys joined by dots for nested objects (a key that itself holds a dot is tried whole first).
    - ``cri``: the CRI (containerd, CRI-O) line ``<time> <stream> <P|F> <message>``; ``fields`` maps header field
      names to ``time``, ``stream`` or ``tag``. A partial line (``P``) is read as a line of its own.

    A line that is not such a record, or has no message, is quarantined (``no_header_match``).
    """

    format: Literal["json", "cri"]
    message: str | None = None
    fields: dict[str, str] = {}

    @model_validator(mode="after")
    def _check(self) -> EnvelopeConfig:
        if self.format == "cri":
            bad = sorted(set(self.fields.values()) - {"time", "stream", "tag"})
            if bad:
                raise ValueError(f"a cri envelope has the parts time, stream and tag, not {bad}")
            if self.message not in (None, "message"):
                raise ValueError("a cri envelope's message is its last part: leave 'message' out")
        return self

    @property
    def message_path(self) -> str:
        return self.message or ("log" if self.format == "json" else "message")


class SessionExtractor(_Model):
    """Find session keys in a line's content or in its file path.

    The first capture group (or the whole match) is the key; ``format`` may rewrite it
    (``{0}`` = the key). ``all: true`` keeps every match (a line can belong to several sessions).
    ``source: field`` reads header field ``field`` (of ``log_format`` or the envelope, e.g. a trace id of a JSON
    record); ``pattern: '.+'`` takes the field whole. Rules are tried in order, content before field before path.
    """

    source: Literal["content", "field", "path"] = "content"
    pattern: str
    all: bool = False
    format: str | None = None
    field: str | None = None

    _v = field_validator("pattern")(_check_regex)

    @model_validator(mode="after")
    def _field(self) -> SessionExtractor:
        if (self.source == "field") != (self.field is not None):
            raise ValueError("'field' names the header field of a session rule with source: field (and only then)")
        return self


class WindowPolicy(_Model):
    """How lines are grouped into windows.

    - ``session``: one window per session key.
    - ``fixed``: ``size`` lines, moving by ``step``, in time order within each ``group_by`` value.
    - ``time``: ``length_s`` seconds, moving by ``step_s``, within each ``group_by`` value.
    - ``line``: every line is its own window (for random samples that are not sessions).
    """

    kind: Literal["session", "fixed", "time", "line"]
    group_by: Literal["node", "component", "session", "file"] | None = None
    size: int | None = Field(None, ge=1)
    step: int | None = Field(None, ge=1)
    length_s: float | None = Field(None, gt=0)
    step_s: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _complete(self) -> WindowPolicy:
        if self.kind == "fixed" and (self.size is None or self.step is None):
            raise ValueError("a fixed window needs both 'size' and 'step'")
        if self.kind == "time" and (self.length_s is None or self.step_s is None):
            raise ValueError("a time window needs both 'length_s' and 'step_s'")
        return self


class LineFieldLabels(_Model):
    """Line-level labels read from a header field (BGL/Thunderbird: first token '-' = normal)."""

    kind: Literal["line_field"]
    field: str
    normal_values: list[str] = ["-"]


class SessionListLabels(_Model):
    """Session labels from a list of anomalous ids (a file given at ingest time).

    Every line of the file is read; its first comma-separated field is an id when it fully matches
    ``id_pattern``; a second field, if present, says ``Normal``/``Anomaly``. Sessions not in the list
    are normal when ``unlisted: normal`` (the list is complete), otherwise unknown (null).
    """

    kind: Literal["session_list"]
    id_pattern: str
    unlisted: Literal["normal", "unknown"] = "normal"

    _v = field_validator("id_pattern")(_check_regex)


LabelConfig = Annotated[LineFieldLabels | SessionListLabels, Field(discriminator="kind")]


class SystemConfig(_Model):
    """One log source: how to parse, mask, mine, window and label its lines."""

    name: str
    description: str = ""  # one line for the LLM prompt, e.g. "BlueGene/L supercomputer (RAS events)"
    log_format: str
    envelope: EnvelopeConfig | None = None  # JSON lines or CRI lines wrapping the message log_format parses
    fields: dict[Literal["level", "component", "node"], str] = {}
    timestamp: TimestampConfig | None = None
    masks: list[MaskRule] = []
    drain: DrainConfig = DrainConfig()
    sessions: list[SessionExtractor] = []
    windows: dict[str, WindowPolicy] = {}
    default_window: str = "line"
    labels: LabelConfig | None = None
    # the level field's values -> fatal | error | warn | info | debug (case-insensitive; beside the defaults of
    # fusionlog.events.DEFAULT_LEVELS, e.g. {FAILURE: fatal, SEVERE: error}); anything else is "unknown"
    levels: dict[str, Literal["fatal", "error", "warn", "info", "debug", "unknown"]] = {}

    @model_validator(mode="after")
    def _check(self) -> SystemConfig:
        from fusionlog.ingest.header import format_fields

        names = format_fields(self.log_format)
        if "Content" not in names:
            raise ValueError("log_format must contain <Content>")
        if self.envelope:
            clash = sorted(set(names) & set(self.envelope.fields))
            if clash:
                raise ValueError(f"envelope fields {clash} are also fields of log_format")
            names = names + list(self.envelope.fields)
        used = list(self.fields.values()) + (self.timestamp.fields if self.timestamp else [])
        used += [s.field for s in self.sessions if s.field]
        if isinstance(self.labels, LineFieldLabels):
            used.append(self.labels.field)
        for field in used:
            if field not in names:
                where = "log_format or the envelope" if self.envelope else "log_format"
                raise ValueError(f"field {field!r} is not in {where} (has {names})")
        if self.default_window not in self.all_windows():
            raise ValueError(f"default_window {self.default_window!r} is not a defined window policy")
        for name, pol in self.all_windows().items():
            if pol.kind == "session" and not self.sessions:
                raise ValueError(f"window {name!r} is by session but 'sessions' defines no extractor")
        return self

    def all_windows(self) -> dict[str, WindowPolicy]:
        """Configured windows plus the built-in ``line`` and ``time`` (1 h) policies."""
        builtin = {
            "line": WindowPolicy(kind="line"),
            "time": WindowPolicy(kind="time", length_s=3600, step_s=3600),
        }
        return {**builtin, **self.windows}

    def window(self, name: str | None = None) -> WindowPolicy:
        name = name or self.default_window
        policies = self.all_windows()
        if name not in policies:
            raise ConfigError(f"system {self.name}: unknown window {name!r} (known: {sorted(policies)})")
        return policies[name]


class SparkConfig(_Model):
    master: str = "local[*]"
    driver_memory: str = "1g"
    split_mb: int = Field(128, ge=1)
    # a gzip file of at least this many MB, among too few files to keep every core busy, is decompressed once
    # (into the run's scratch) and read in byte ranges like a plain file; None: every gzip file is one task
    spread_gz_mb: float | None = Field(16, ge=0)
    shuffle_partitions: int = Field(8, ge=1)
    conf: dict[str, str] = {}


class IngestConfig(_Model):
    """Settings of the ingest stage that are not per system."""

    spark: SparkConfig = SparkConfig()
    on_invalid_utf8: Literal["replace", "quarantine"] = "replace"
    max_line_bytes: int = Field(65536, ge=256)
    # a file whose head (first 64 KiB, decompressed) has more than this share of non-text bytes is binary:
    # every line quarantined as binary_file, nothing mined
    binary_share: float = Field(0.30, gt=0, le=1)
    splits: dict[Literal["train", "val", "test"], float] = {"train": 0.6, "val": 0.2, "test": 0.2}
    mask_cache_size: int = Field(200_000, ge=0)

    @field_validator("splits")
    @classmethod
    def _sum_to_one(cls, v: dict[str, float]) -> dict[str, float]:
        if abs(sum(v.values()) - 1.0) > 1e-6 or any(x < 0 for x in v.values()):
            raise ValueError(f"split fractions must be >= 0 and sum to 1, got {v}")
        return v


# --------------------------------------------------------------------------------------------------
# loading


def conf_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The conf directory: argument, $FUSIONLOG_CONF, ./conf, or the one beside the package."""
    for cand in (explicit, os.environ.get("FUSIONLOG_CONF")):
        if cand:
            path = Path(cand)
            if not path.is_dir():
                raise ConfigError(f"config directory {path} does not exist")
            return path
    local = Path.cwd() / "conf"
    if (local / "systems").is_dir():
        return local
    return Path(__file__).resolve().parents[1] / "conf"


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse a YAML mapping; errors name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}:{where}: malformed YAML: {problem}") from exc
    if data is None:
        raise ConfigError(f"{path}: empty file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _validate(model: type[_Model], data: dict[str, Any], path: Path) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"{path}: key '{key}': {err['msg']}")
        raise ConfigError("\n".join(lines)) from exc


def known_systems(conf: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (conf or conf_dir()).joinpath("systems").glob("*.yaml"))


def load_system(name_or_path: str, conf: Path | None = None) -> SystemConfig:
    """Load ``conf/systems/<name>.yaml`` (or a YAML path)."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        base = conf or conf_dir()
        path = base / "systems" / f"{name_or_path}.yaml"
        if not path.exists():
            raise ConfigError(
                f"unknown system {name_or_path!r}: no {path} (known: {', '.join(known_systems(base))})"
            )
    return _validate(SystemConfig, read_yaml(path), path)


def _load_optional(model: type[_Model], name: str, path: Path | None) -> Any:
    """``conf/<name>.yaml`` (or ``path``) validated as ``model``; defaults when the file is absent."""
    path = path or conf_dir() / f"{name}.yaml"
    if not path.exists():
        return model()
    return _validate(model, read_yaml(path), path)


def load_ingest(path: Path | None = None) -> IngestConfig:
    """Load the ingest settings (``conf/ingest.yaml`` if present, else defaults)."""
    return _load_optional(IngestConfig, "ingest", path)


class EmbedConfig(_Model):
    """The template embedding stage (Ray Data actor pool + LanceDB)."""

    model: str = "all-MiniLM-L6-v2"  # the packaged model, or a local sentence-transformers directory
    batch_size: int = Field(128, ge=1)
    actors: int = Field(1, ge=1)
    cpus_per_actor: float = Field(0.5, gt=0)  # fractional: leave a CPU for the driver on small machines
    threads_per_actor: int = Field(1, ge=1)  # torch intra-op threads of each actor
    normalize: bool = True
    actor_wait_s: int = Field(300, ge=1)  # the actor pool must start within this, or fail naming who holds what
    # what is embedded for each event: its template, or the LLM's plain-language interpretation of it (LEI;
    # the judge stage writes interpretations/ first, llm.event_interpret_prompt; an event without one: its template)
    text: Literal["template", "interpretation"] = "template"


def load_embed(path: Path | None = None, overrides: dict[str, Any] | None = None) -> EmbedConfig:
    """Load ``conf/embed.yaml`` if present, else defaults; ``overrides`` (an experiment's ``embed:``) win."""
    cfg = _load_optional(EmbedConfig, "embed", path)
    if not overrides:
        return cfg
    return _validate(EmbedConfig, {**cfg.model_dump(), **overrides}, Path("experiment embed overrides"))


class RouteConfig(_Model):
    """The semantic router: general vs proprietary windows of the target (FusionLog, Router)."""

    tau: float | None = Field(None, ge=-1.0, le=1.0)  # fixed threshold; default: mean of x_sim
    tau_quantile: float | None = Field(None, gt=0.0, lt=1.0)  # or a quantile of x_sim
    exact_max_pairs: int = Field(50_000_000, ge=1)  # above this many pairs, search LanceDB instead
    resource_wait_s: float = Field(300, gt=0)  # the x_sim tasks must get CPUs within this, or fail naming who

    @model_validator(mode="after")
    def _one(self) -> RouteConfig:
        if self.tau is not None and self.tau_quantile is not None:
            raise ValueError("give 'tau' or 'tau_quantile', not both")
        return self


class ModelConfig(_Model):
    """The small model: BiGRU + attention over template vectors (MetaLog: 2 x 100)."""

    hidden: int = Field(100, ge=1)
    layers: int = Field(2, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    max_len: int = Field(512, ge=1)  # longer windows keep their last max_len templates
    # system-agnostic features beside each template's vector (fusionlog.model.features): severity, rarity (log
    # document frequency in its own system), llm (the LLM's event score: the judge stage asks the sources' events too)
    event_features: list[Literal["severity", "rarity", "llm"]] = ["severity", "rarity", "llm"]


class TrainConfig(_Model):
    """Training of the small model with Ray Train (``TorchTrainer``, DDP across workers).

    ``objective``: ``source_only`` (supervised on the sources, baseline a), ``meta`` (first-order
    meta-learning across source systems or time slices, the ZeroLog/FreeLog branch, baseline b),
    ``meta_align`` (meta + adversarial alignment to the target's unlabeled general windows: FusionLog's
    general branch). Steps, not epochs: batches are drawn class-balanced from the training split.
    """

    objective: Literal["source_only", "meta", "meta_align"] = "meta_align"
    steps: int = Field(200, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(2e-3, gt=0)  # MetaLog
    inner_lr: float = Field(2e-3, gt=0)  # the virtual step on the support task
    query_weight: float = Field(1.0, ge=0)
    align_weight: float = Field(0.1, ge=0)  # weight of the domain loss (gradient reversal)
    min_align_windows: int = Field(32, ge=1)  # fewer general target windows: no alignment (a note says so)
    slices: int = Field(4, ge=2)  # time slices per source system when there is one source
    eval_every: int = Field(25, ge=1)  # validate on the sources' val split; keep the best
    max_train_windows: int = Field(200_000, ge=1)  # per system, the earliest ones
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)  # leave a CPU for the driver on small machines
    # beside an idle LLM replica fewer CPUs may be free: a worker then claims what is free, down to this floor
    min_cpus_per_worker: float = Field(0.25, gt=0)
    resource_wait_s: float = Field(300, gt=0)  # the worker group must be placed within this, or fail naming who
    # custom Ray resources each worker also claims, e.g. {trainers: 1}: the workers go to the nodes started with
    # them (`ray start --resources`, a KubeRay group's rayStartParams); where it runs, not what it learns
    resources: dict[str, float] = {}
    threads_per_worker: int = Field(1, ge=1)
    max_failures: int = Field(2, ge=0)  # a lost worker restarts the (deterministic) loop from step 0
    select: Literal["best_val", "last"] = "best_val"  # checkpoint: best on the sources' val split, or the last
    seed: int = 0

    @field_validator("resources")
    @classmethod
    def _custom(cls, v: dict[str, float]) -> dict[str, float]:
        named = sorted(k for k in v if k.upper() in ("CPU", "GPU", "MEMORY"))
        if named:
            raise ValueError(f"resources names {named}: set cpus_per_worker / use_gpu instead")
        if any(x <= 0 for x in v.values()):
            raise ValueError(f"resources must be positive amounts: {v}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: object) -> object:
        if isinstance(data, dict) and "mode" in data:
            raise ValueError("'mode' was renamed 'objective' (source_only | meta | meta_align): a detection method "
                             "is chosen by run.mode")
        return data


class EvalConfig(_Model):
    """``fusionlog evaluate``: training objectives trained per seed, and the baselines beside them."""

    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    objectives: list[Literal["source_only", "meta", "meta_align"]] = Field(
        default_factory=lambda: ["source_only", "meta", "meta_align"], min_length=1)
    reference: bool = True  # also train on the target's own labels (train split) and score its test split:
    # an in-domain upper reference, reported apart (it reads the target's labels; the zero-label modes do not)

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: object) -> object:
        if isinstance(data, dict) and "modes" in data:
            raise ValueError("'modes' was renamed 'objectives' (source_only | meta | meta_align)")
        if isinstance(data, dict) and "threshold" in data:
            raise ValueError("'evaluate.threshold' moved to 'run.threshold' (one detection threshold for the run)")
        return data


class DistillConfig(_Model):
    """Collaborative distillation on the proprietary windows (FusionLog, rounds r = 1..R).

    Round r: the LLM labels the proprietary windows not kept yet (one call per signature); the small model
    keeps a pseudo-label where it agrees and its confidence max(p, 1 - p) >= ε_r; it is fine-tuned on the kept
    windows + the sources; kept windows join the RAG knowledge base. ε_{r+1} = max(floor, ε_r * decay).
    """

    rounds: int = Field(3, ge=1)
    epsilon: float = Field(0.9, gt=0.5, le=1.0)  # ε_1
    decay: float = Field(0.9, gt=0.0, le=1.0)  # a static ε stalls (the paper): decay it each round
    floor: float = Field(0.6, gt=0.5, le=1.0)
    finetune_steps: int = Field(100, ge=1)
    min_new: int = Field(1, ge=0)  # stop when a round keeps fewer new windows than this
    # no class may outnumber the other by more than this in the kept pool; a pool of one class keeps nothing
    # (a small model biased to one class agrees with the LLM only on that class: fine-tuning on it collapses)
    max_class_ratio: float | None = Field(4.0, ge=1.0)

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: object) -> object:
        if isinstance(data, dict) and "threshold" in data:
            raise ValueError("'distill.threshold' moved to 'run.threshold' (one detection threshold for the run)")
        return data


class RunSpec(_Model):
    """``fusionlog run``: which detection method produces the scores (``mode``), and which methods the evaluation
    compares (the registered baselines are always scored beside them). Names: ``fusionlog.methods.names()``."""

    mode: str = "fusionlog"
    # the paper's methods, kept as ablations of the fused default, and the LLM's event judgment (a branch)
    compare: list[str] = Field(default_factory=lambda: ["fusionlog-vote", "fusionlog-distilled", "llm-events",
                                                        "fusionlog-paper", "generallog", "no-router"])
    seed: int = 0
    # P(anomalous) >= threshold -> anomalous: every method's cut, the distillation's agreement, the metrics
    threshold: float = Field(0.5, gt=0, lt=1)
    top_windows: int = Field(20, ge=0)  # the report's most anomalous windows, with their raw lines

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, v: str) -> str:
        from fusionlog.methods import get

        get(v)  # an unknown name raises, listing the registered ones
        return v

    @field_validator("compare")
    @classmethod
    def _known_methods(cls, v: list[str]) -> list[str]:
        from fusionlog.methods import get

        for name in v:
            get(name)
        return v


class DatasetSpec(_Model):
    """One dataset of an experiment: raw archives (Spark ingest) or an event-sequence set."""

    kind: Literal["raw", "sequences"]
    system: str | None = None  # conf/systems/<system>.yaml for raw data (default: the dataset's name)
    inputs: list[str] = Field(default_factory=list)  # raw: files, dirs or globs; relative to the repo
    labels: list[str] = Field(default_factory=list)  # raw: session-list label files
    window: str | None = None  # raw: window policy name (default: the system's)
    templates: str | None = None  # sequences: headerless templates CSV
    sequences: list[str] = Field(default_factory=list)  # sequences: PATH:normal|anomalous|unknown[:fraction]

    @model_validator(mode="after")
    def _complete(self) -> DatasetSpec:
        if self.kind == "raw" and not self.inputs:
            raise ValueError("a raw dataset needs 'inputs'")
        if self.kind == "sequences" and (not self.templates or not self.sequences):
            raise ValueError("a sequence dataset needs 'templates' and 'sequences'")
        return self


class ExperimentConfig(_Model):
    """``conf/experiments/<name>.yaml``: labeled sources -> one unlabeled target, and how to train."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    datasets: dict[str, DatasetSpec] = Field(min_length=2)
    sources: list[str] = Field(min_length=1)
    target: str
    route: RouteConfig = Field(default_factory=RouteConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvalConfig = Field(default_factory=EvalConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    run: RunSpec = Field(default_factory=RunSpec)
    llm: dict[str, Any] = Field(default_factory=dict)  # overrides of conf/llm.yaml for this experiment
    embed: dict[str, Any] = Field(default_factory=dict)  # overrides of conf/embed.yaml (e.g. text: interpretation)

    @model_validator(mode="after")
    def _known(self) -> ExperimentConfig:
        for name in [*self.sources, self.target]:
            if name not in self.datasets:
                raise ValueError(f"{name!r} is not one of the datasets {sorted(self.datasets)}")
        if self.target in self.sources:
            raise ValueError(f"the target {self.target!r} is also a source")
        return self


def load_experiment(name_or_path: str | Path) -> ExperimentConfig:
    """Load ``conf/experiments/<name>.yaml`` (or a YAML path)."""
    path = _conf_file(name_or_path, "experiments", "experiment")
    return _validate(ExperimentConfig, read_yaml(path), path)


def _conf_file(name_or_path: str | Path, folder: str, what: str) -> Path:
    """A YAML path as given, or ``conf/<folder>/<name>.yaml``; a missing one names the known ones."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = conf_dir() / folder / f"{name_or_path}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (conf_dir() / folder).glob("*.yaml"))
        raise ConfigError(f"unknown {what} {str(name_or_path)!r}: no {path} (known: {', '.join(known)})")
    return path


class DevSetConfig(_Model):
    """``conf/devsets/<name>.yaml``: the labeled development set, scored leave-one-system-out (``fusionlog results
    --loso``): each dataset is the target once, every other one its labeled source. ``experiment`` holds what each
    fold's experiment sets besides its datasets, sources and target (run, train, distill, llm, ...)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    datasets: dict[str, DatasetSpec] = Field(min_length=2)
    targets: list[str] | None = None  # the folds' targets (default: every dataset, in order)
    experiment: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _folds(self) -> DevSetConfig:
        for t in self.targets or []:
            if t not in self.datasets:
                raise ValueError(f"target {t!r} is not one of the datasets {sorted(self.datasets)}")
        for key in ("name", "datasets", "sources", "target"):
            if key in self.experiment:
                raise ValueError(f"experiment.{key} is set by each fold")
        return self

    def fold(self, target: str) -> ExperimentConfig:
        """The experiment in which ``target`` is the unlabeled target and every other dataset a labeled source."""
        return ExperimentConfig.model_validate({
            **self.experiment, "name": f"{self.name}-{target}", "datasets": self.datasets, "target": target,
            "sources": [d for d in self.datasets if d != target],
            "description": f"{self.description} (fold: {target} the target)".strip()})

    def folds(self) -> list[ExperimentConfig]:
        return [self.fold(t) for t in self.targets or list(self.datasets)]


def load_devset(name_or_path: str | Path) -> DevSetConfig:
    """Load ``conf/devsets/<name>.yaml`` (or a YAML path); every fold is validated now (errors name the file)."""
    path = _conf_file(name_or_path, "devsets", "development set")
    dev = _validate(DevSetConfig, read_yaml(path), path)
    try:
        dev.folds()
    except ValidationError as exc:
        raise ConfigError("\n".join(f"{path}: key 'experiment.{'.'.join(str(p) for p in e['loc'])}': {e['msg']}"
                                     for e in exc.errors())) from exc
    return dev


class ServeConfig(_Model):
    """The Ray Serve vLLM deployment (``fusionlog serve llm``); see fusionlog/llm/serve.py."""

    model_id: str = "fusionlog-labeler"  # the name clients send as "model"
    model_path: str | None = None  # a local HF directory; default: the prepared default model in cache_dir
    accelerator: Literal["cpu", "gpu"] = "cpu"
    accelerator_type: str | None = None  # GPU only, e.g. "L4", "A10G", "H100"
    tensor_parallel_size: int = Field(1, ge=1)
    max_model_len: int = Field(2048, ge=256)
    max_num_seqs: int = Field(8, ge=1)
    enforce_eager: bool = True  # CPU: loads in ~40 s instead of ~130 s for ~15 % slower decode
    # the engine's dtype; auto: float32 on CPUs (bf16 quantizes the judge's yes/no log-odds into ties, and its
    # numerics differ between CPUs; on an AVX2-only CPU it is also ~50x slower: docs/llm.md), bfloat16 on GPUs
    dtype: Literal["auto", "bfloat16", "float32", "float16"] = "auto"
    num_replicas: int = Field(1, ge=1)
    autoscaling: dict[str, int] | None = None  # e.g. {min_replicas: 1, max_replicas: 4}
    cpus_per_replica: float = Field(1, gt=0)
    kv_cache_gib: int = Field(1, ge=1)  # VLLM_CPU_KVCACHE_SPACE (CPU only)
    # tokens per KV-cache block; prefix caching reuses whole blocks only. None: 32 on CPU (vLLM's CPU default, 128,
    # recomputes a shared 160-token instruction past its first 128 tokens in every event question:
    # `fusionlog bench judge`, docs/llm.md), the engine's own default on GPUs
    block_size: int | None = Field(None, ge=16, multiple_of=16)
    omp_threads: int = Field(2, ge=1)  # OMP_NUM_THREADS of the engine (CPU only)
    reserved_cpus: int = Field(0, ge=0)  # VLLM_CPU_NUM_OF_RESERVED_CPU; vLLM reserves one core by default
    host: str = "127.0.0.1"  # bind address: loopback unless you mean otherwise
    port: int = Field(8000, ge=1, le=65535)
    start_timeout_s: float = Field(600, gt=0)  # replicas placed and answering, or fail naming who holds what


class LLMConfig(_Model):
    """The labeling LLM: our Ray Serve vLLM app (``serve``) or any OpenAI-compatible endpoint (``openai``)."""

    backend: Literal["serve", "openai"] = "serve"
    serve: ServeConfig = Field(default_factory=ServeConfig)
    base_url: str | None = None  # openai backend: e.g. http://127.0.0.1:8080/v1 (llama.cpp server, Ollama)
    model: str | None = None  # openai backend: the model name the endpoint expects
    api_key_env: str | None = None  # the environment variable holding the API key (never the key itself)
    structured: bool = True  # send the JSON schema as response_format (all vLLM / llama.cpp / Ollama do)
    cache_dir: str = "~/.cache/fusionlog/models"  # where `fusionlog models prepare` puts converted models
    prompt: str = "label_v2"  # fusionlog/llm/prompts/<prompt>.txt (docs/llm.md: v1 vs v2)
    # the yes/no question about one event (fusionlog/llm/judge.py): its message and component, not its level (the
    # level is severity's view; docs/llm.md); event_v1 also shows the level
    event_prompt: str = "event_content_v1"
    # the opposite question ("is it routine?", event_routine_v1): every event asked both, twice the calls
    event_counter_prompt: str | None = None
    # a plain-language interpretation of each event first (LEI, fusionlog/llm/interpret.py: event_interpret_v1),
    # read by an event question with an {interpretation} field (event_interpreted_v1): one generation per event more
    event_interpret_prompt: str | None = None
    # triage of the events the yes/no question calls failures (fusionlog/llm/triage.py): the system's fault, a user's
    # or client's problem, or routine, asked as a multiple choice in triage_orders orders of the kinds (order bias
    # cancels only in all 6: each kind in each place twice, and the system's fault before a user's problem as often as
    # after; 3 puts each kind in each place once, the system's fault first of the two twice); the LLM view keeps a
    # failure only where it is more likely the system's than a user's (None: no triage, the default by LOSO:
    # docs/transfer.md; event_triage_v2 states the kinds in general terms, event_triage_v1 is kept for the record)
    event_triage_prompt: str | None = None
    triage_orders: int = Field(6, ge=1, le=6)
    max_tokens: int = Field(128, ge=16)
    timeout_s: float = Field(600, gt=0)  # per request: 8 concurrent ~1k-token prompts take minutes on 2 CPU cores
    retries: int = Field(3, ge=0)
    backoff_s: float = Field(1.0, ge=0)
    concurrency: int = Field(8, ge=1)  # requests in flight (vLLM batches them)
    signature: Literal["ordered", "set"] = "ordered"  # windows with the same signature share one call
    k_examples: int = Field(4, ge=0)  # few-shot examples from the RAG knowledge base (0: zero-shot)
    balanced_examples: bool = True  # the k/2 nearest examples of each label (docs/pipeline.md: why)
    max_window_chars: int = Field(4000, ge=200)
    # the model's context length in tokens; None: asked from the server (GET /models: vLLM's max_model_len),
    # else serve.max_model_len (serve backend), else 2048. Every prompt is fitted to it, less max_tokens.
    context_tokens: int | None = Field(None, ge=256)
    # a local model directory whose tokenizer counts prompt tokens (openai backend); default: the served model's
    # directory (serve backend, or an openai-backend `model` that is a local directory), else an estimate
    tokenizer: str | None = None
    abstain_warn_rate: float = Field(0.2, ge=0, le=1)  # warn (console, stage summary, report) at this share

    @model_validator(mode="after")
    def _endpoint(self) -> LLMConfig:
        if self.backend == "openai" and not (self.base_url and self.model):
            raise ValueError("the openai backend needs 'base_url' and 'model'")
        from fusionlog.llm.prompt import load_prompt

        for name in (self.event_prompt, self.event_counter_prompt):
            if name and "{interpretation}" in load_prompt(name).user and not self.event_interpret_prompt:
                raise ValueError(f"event prompt {name!r} shows the event's interpretation: set "
                                 "event_interpret_prompt (e.g. event_interpret_v1)")
        return self


def load_llm(path: Path | None = None, overrides: dict[str, Any] | None = None) -> LLMConfig:
    """Load ``conf/llm.yaml`` if present, else defaults; ``overrides`` (e.g. an experiment's ``llm:``) win."""
    cfg = _load_optional(LLMConfig, "llm", path)
    if not overrides:
        return cfg
    merged = cfg.model_dump()
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return _validate(LLMConfig, merged, Path("experiment llm overrides"))

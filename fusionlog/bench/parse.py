"""``fusionlog bench parse``: grouping/parsing accuracy on the 16 loghub 2k logs, ours vs plain Drain3.

Ours runs exactly the ingest pipeline: header regex and masks from ``conf/systems/<System>.yaml``,
distinct masked messages (first-occurrence order, with counts) fed to our Drain3 miner, each line
taking the final template of its cluster. The baseline is plain Drain3 (default ``TemplateMinerConfig``,
no masks) fed the ground-truth ``Content`` column line by line, as in the loghub benchmarks. Both are
scored against the corrected ground truth shipped in ``data/loghub_2k``.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pandas as pd
from drain3 import TemplateMiner as Drain3Miner
from drain3.template_miner_config import TemplateMinerConfig
from rich import box
from rich.console import Console
from rich.table import Table

import fusionlog
from fusionlog.config import SystemConfig, load_system
from fusionlog.evaluate.parsing import grouping_accuracy, parsing_accuracy
from fusionlog.ingest.mask import PLACEHOLDER
from fusionlog.ingest.mask import placeholders as mask_placeholders
from fusionlog.ingest.parse import LineParser
from fusionlog.ingest.templates import TemplateMiner

SYSTEMS = [
    "Android", "Apache", "BGL", "HDFS", "HPC", "Hadoop", "HealthApp", "Linux",
    "Mac", "OpenSSH", "OpenStack", "Proxifier", "Spark", "Thunderbird", "Windows", "Zookeeper",
]  # fmt: skip


def default_data_dir() -> Path:
    """The repository's ``data/`` folder (beside the package)."""
    return Path(fusionlog.__file__).resolve().parents[1] / "data"


def read_lines(path: Path) -> list[str]:
    """Lines of a (gzip) log, UTF-8 decoded with replacement, without line terminators."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    text = raw.decode("utf-8", errors="replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln.rstrip("\r") for ln in lines]


def read_truth(path: Path) -> pd.DataFrame:
    """The structured ground-truth CSV, all columns as strings, in LineId order."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    return df.sort_values("LineId", key=lambda s: s.astype(int), kind="stable").reset_index(drop=True)


Id = int | None  # a template id, None for a line whose header does not match


def placeholders(cfg: SystemConfig) -> frozenset[str]:
    """The named placeholders (``<NUM>``, ``<IP>``...) that the system's masks write."""
    return mask_placeholders(cfg.masks)


def as_wildcards(template: str, names: Collection[str]) -> str:
    """``template`` with our named mask placeholders (only those in ``names``) written as ``<*>``.

    loghub writes every variable as ``<*>``; our masks write named placeholders, which Drain treats
    as ordinary equal tokens (see :func:`fusionlog.ingest.mask.placeholders`). Only the scoring
    renames them: the mined templates are not changed.
    """
    if not names:
        return template
    return PLACEHOLDER.sub(lambda m: "<*>" if m.group(0) in names else m.group(0), template)


def parse_ours(cfg: SystemConfig, lines: list[str]) -> tuple[list[Id], list[str | None], list[str | None]]:
    """Our ingest pipeline: (template id, final template, extracted Content) per line, None if unparsed.

    Each line goes through the header regex and the masks; the distinct masked messages are added to
    the miner once each, in order of first occurrence, with their counts; every line then takes the
    final template of its cluster. Templates are returned as mined (named placeholders such as
    ``<NUM>``); :func:`as_wildcards` gives the form scored against loghub.
    """
    parser = LineParser(cfg)
    masked: list[str | None] = []
    contents: list[str | None] = []
    counts: dict[str, int] = {}
    for line in lines:
        p = parser.parse(line)
        if p is None:
            masked.append(None)
            contents.append(None)
            continue
        masked.append(p.masked)
        contents.append(p.content)
        counts[p.masked] = counts.get(p.masked, 0) + 1
    miner = TemplateMiner(cfg.drain)
    msg_id = {msg: miner.add(msg, n) for msg, n in counts.items()}
    ids = [msg_id[m] if m is not None else None for m in masked]
    templates = [miner.template_of(i) if i is not None else None for i in ids]
    return ids, templates, contents


def parse_plain_drain3(contents: list[str]) -> tuple[list[int], list[str]]:
    """Plain Drain3 (default config, no masks) fed one message per line, in order."""
    miner = Drain3Miner(config=TemplateMinerConfig())
    ids = [miner.add_log_message(c)["cluster_id"] for c in contents]
    final = {c.cluster_id: c.get_template() for c in miner.drain.clusters}
    return ids, [final[i] for i in ids]


def bench_system(system: str, data_dir: Path) -> dict[str, Any]:
    """GA/PA of our pipeline and of plain Drain3 on ``<data_dir>/loghub_2k/<system>``."""
    folder = data_dir / "loghub_2k" / system
    lines = read_lines(folder / f"{system}_2k.log.gz")
    truth = read_truth(folder / f"{system}_2k.log_structured_corrected.csv.gz")
    if len(truth) != len(lines):
        raise ValueError(f"{system}: {len(lines)} log lines but {len(truth)} ground-truth rows")
    gt = truth["EventTemplate"].tolist()

    cfg = load_system(system)
    t0 = time.perf_counter()
    ids, templates, _ = parse_ours(cfg, lines)
    t_ours = time.perf_counter() - t0
    names = placeholders(cfg)
    templates = [as_wildcards(t, names) if t is not None else None for t in templates]

    t0 = time.perf_counter()
    base_ids, base_templates = parse_plain_drain3(truth["Content"].tolist())
    t_base = time.perf_counter() - t0

    return {
        "system": system,
        "lines": len(lines),
        "unparsed": sum(i is None for i in ids),
        "ga_ours": grouping_accuracy(gt, ids),
        "pa_ours": parsing_accuracy(gt, templates),
        "ga_drain3": grouping_accuracy(gt, base_ids),
        "pa_drain3": parsing_accuracy(gt, base_templates),
        "templates_ours": len({i for i in ids if i is not None}),
        "templates_drain3": len(set(base_ids)),
        "templates_gt": len({" ".join(t.split()) for t in gt}),
        "seconds_ours": round(t_ours, 3),
        "seconds_drain3": round(t_base, 3),
    }


_ACCURACIES = ("ga_ours", "pa_ours", "ga_drain3", "pa_drain3")
_COUNTS = ("lines", "unparsed", "templates_ours", "templates_drain3", "templates_gt")


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The MEAN row: mean of each accuracy over the systems, totals of the counts and seconds."""
    out: dict[str, Any] = {"system": "MEAN"}
    out.update({k: sum(r[k] for r in rows) / len(rows) for k in _ACCURACIES})
    out.update({k: sum(r[k] for r in rows) for k in _COUNTS})
    out.update({k: round(sum(r[k] for r in rows), 3) for k in ("seconds_ours", "seconds_drain3")})
    return out


def print_table(rows: list[dict[str, Any]], console: Console | None = None) -> None:
    """Print the per-system rows (the last one may be the MEAN row) as a rich table."""
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=120)  # piped output: do not squeeze the table into 80 columns
    table = Table(
        title="Log parsing, loghub 2k, corrected ground truth",
        caption="MEAN: mean GA/PA over the systems; lines, unparsed, templates and seconds are totals",
        box=box.SIMPLE_HEAD,
    )
    for col in ("system", "lines", "unparsed", "GA ours", "GA Drain3", "PA ours", "PA Drain3",
                "templates ours/Drain3/gt", "seconds ours/Drain3"):  # fmt: skip
        table.add_column(col, justify="left" if col == "system" else "right", no_wrap=col == "system")
    for r in rows:
        table.add_row(
            r["system"], str(r["lines"]), str(r["unparsed"]),
            f"{r['ga_ours']:.3f}", f"{r['ga_drain3']:.3f}", f"{r['pa_ours']:.3f}", f"{r['pa_drain3']:.3f}",
            f"{r['templates_ours']}/{r['templates_drain3']}/{r['templates_gt']}",
            f"{r['seconds_ours']:.2f}/{r['seconds_drain3']:.2f}",
            style="bold" if r["system"] == "MEAN" else None,
        )  # fmt: skip
    console.print(table)


def run(
    systems: list[str] | None = None, data_dir: Path | None = None, out: Path | None = None
) -> list[dict[str, Any]]:
    """Benchmark ``systems`` (default: all 16); print the table, write JSON to ``out`` if given.

    Returns one dict per system: ``system, lines, unparsed`` (header mismatches, scored as wrong),
    ``ga_ours, pa_ours, ga_drain3, pa_drain3``, ``templates_ours, templates_drain3, templates_gt`` and
    ``seconds_ours, seconds_drain3``. The table and the JSON (``{"systems": [...], "mean": {...}}``)
    add the MEAN row of :func:`summary`.
    """
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    systems = systems or SYSTEMS
    for s in systems:
        if not (data_dir / "loghub_2k" / s).is_dir():
            known = ", ".join(SYSTEMS)
            raise ValueError(f"no loghub 2k sample for {s!r} under {data_dir / 'loghub_2k'} (known: {known})")
    rows = [bench_system(s, data_dir) for s in systems]
    mean = summary(rows)
    print_table(rows + [mean])
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"systems": rows, "mean": mean}, indent=2) + "\n", encoding="utf-8")
    return rows

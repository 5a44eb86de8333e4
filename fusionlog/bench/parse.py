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
import re
import time
from pathlib import Path
from typing import Any

import pandas as pd
from drain3 import TemplateMiner as Drain3Miner
from drain3.template_miner_config import TemplateMinerConfig
from rich.console import Console
from rich.table import Table

import fusionlog
from fusionlog.config import SystemConfig, load_system
from fusionlog.evaluate.parsing import grouping_accuracy, parsing_accuracy
from fusionlog.ingest.parse import LineParser
from fusionlog.ingest.templates import TemplateMiner

SYSTEMS = [
    "Android", "Apache", "BGL", "HDFS", "HPC", "Hadoop", "HealthApp", "Linux",
    "Mac", "OpenSSH", "OpenStack", "Proxifier", "Spark", "Thunderbird", "Windows", "Zookeeper",
]  # fmt: skip


def default_data_dir() -> Path:
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


_PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*>")


def placeholders(cfg: SystemConfig) -> set[str]:
    """The named placeholders (``<NUM>``, ``<IP>``...) that the system's masks write."""
    return {p for rule in cfg.masks for p in _PLACEHOLDER.findall(rule.replacement)}


def as_wildcards(template: str, names: set[str]) -> str:
    """``template`` with our named mask placeholders written as loghub's ``<*>``."""
    if not names:
        return template
    return _PLACEHOLDER.sub(lambda m: "<*>" if m.group(0) in names else m.group(0), template)


def parse_ours(system: str, lines: list[str]) -> tuple[list[int | None], list[str | None], list[str | None]]:
    """Our pipeline: (template id, final template, extracted Content) per line; None when unparsed.

    Templates are returned as mined; see :func:`as_wildcards` for the form scored against loghub.
    """
    cfg = load_system(system)
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
    folder = data_dir / "loghub_2k" / system
    lines = read_lines(folder / f"{system}_2k.log.gz")
    truth = read_truth(folder / f"{system}_2k.log_structured_corrected.csv.gz")
    if len(truth) != len(lines):
        raise ValueError(f"{system}: {len(lines)} log lines but {len(truth)} ground-truth rows")
    gt = truth["EventTemplate"].tolist()

    t0 = time.perf_counter()
    ids, templates, _ = parse_ours(system, lines)
    t_ours = time.perf_counter() - t0
    names = placeholders(load_system(system))
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


def _mean_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    mean: dict[str, Any] = {"system": "MEAN"}
    for key in ("ga_ours", "pa_ours", "ga_drain3", "pa_drain3"):
        mean[key] = sum(r[key] for r in rows) / n
    for key in ("lines", "unparsed", "templates_ours", "templates_drain3", "templates_gt"):
        mean[key] = sum(r[key] for r in rows)
    for key in ("seconds_ours", "seconds_drain3"):
        mean[key] = round(sum(r[key] for r in rows), 3)
    return mean


def print_table(rows: list[dict[str, Any]], console: Console | None = None) -> None:
    table = Table(title="Log parsing on loghub 2k (corrected ground truth): ours vs plain Drain3")
    for col in ("system", "lines", "unparsed", "GA ours", "PA ours", "GA Drain3", "PA Drain3",
                "tpl ours", "tpl Drain3", "tpl gt", "s ours", "s Drain3"):  # fmt: skip
        table.add_column(col, justify="left" if col == "system" else "right")
    for i, r in enumerate(rows):
        table.add_row(
            r["system"], str(r["lines"]), str(r["unparsed"]),
            f"{r['ga_ours']:.3f}", f"{r['pa_ours']:.3f}", f"{r['ga_drain3']:.3f}", f"{r['pa_drain3']:.3f}",
            str(r["templates_ours"]), str(r["templates_drain3"]), str(r["templates_gt"]),
            f"{r['seconds_ours']:.2f}", f"{r['seconds_drain3']:.2f}",
            end_section=i == len(rows) - 2,
        )  # fmt: skip
    (console or Console()).print(table)


def run(systems: list[str] | None = None, data_dir: Path | None = None, out: Path | None = None) -> list[dict]:
    """Benchmark ``systems`` (default: all 16); print the table, write JSON to ``out`` if given.

    Returns one dict per system (GA/PA ours and plain Drain3, template counts, seconds); the printed
    table and the JSON also carry a MEAN row (means of the accuracies, sums of the counts).
    """
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    rows = [bench_system(s, data_dir) for s in (systems or SYSTEMS)]
    print_table(rows + [_mean_row(rows)])
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"systems": rows, "mean": _mean_row(rows)}, indent=2) + "\n")
    return rows

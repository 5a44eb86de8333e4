"""The Parquet data contracts between stages (written down here, evolved here).

A run directory holds one folder per table, partitioned by system (``<table>/system=<name>/``):

- ``lines``: one row per parsed line. ``file`` + ``line_no`` (1-based) lead back to the raw line.
  ``sessions`` is a list because a line can belong to several sessions (an HDFS line may name
  several blocks). ``params`` are the content tokens at the template's variable positions (``<*>``
  or a mask placeholder such as ``<NUM>``; null when a line-scope mask changed the token count).
  ``label`` is the line-level label (BGL/Thunderbird): 1 = anomalous, 0 = normal, null = unknown.
  ``content`` is the message text after the header.
- ``templates``: one row per template (Drain cluster); ``count`` = lines of this ingest.
- ``windows``: one row per window: the template ids in order, beside them each line's raw level
  (``levels``; null for event-sequence sets, which have none), where its lines are (first/last file
  and line number), its time span, its label (1 if any member line or session is anomalous) and its
  chronological split (train/val/test).
- ``quarantine``: lines that could not be parsed, with the raw bytes and a reason.

Later stages (same layout, ``<table>/system=<target>/``):

- ``routes``: window_id, x_sim, route (``general`` | ``proprietary``); τ is in ``stats/route_<target>.json``.
- ``llm_labels``: one row per labeled window: the LLM's verdict (null label when it abstained).
- ``scores``: the product: one row per target window: ``score`` = P(anomalous) in [0, 1] (float64), ``label`` =
  the predicted label (1 anomalous), ``route``, ``scorer`` (``small_model`` | ``llm``: who decided),
  ``round`` (the distillation round whose model scored it; null for modes without rounds); for a fusion,
  ``flagged_by`` (the views whose own label-free cut flags the window) and ``evidence`` (per view, its
  contribution to the learned fusion's log-odds, or the view's score for the vote); null for other methods.
  ``window_id`` joins ``windows`` (first/last file + line lead back to the raw lines).
- ``distill/<target>/rounds.json``: one object per round (see :data:`ROUND_KEYS`).
- ``report/``: ``report.html`` (self-contained, plots inline) and ``metrics.json``.
"""

from __future__ import annotations

import pyarrow as pa

LINES = pa.schema(
    [
        ("file", pa.string()),
        ("line_no", pa.int64()),
        ("ts", pa.timestamp("us")),
        ("level", pa.string()),
        ("component", pa.string()),
        ("node", pa.string()),
        ("sessions", pa.list_(pa.string())),
        ("template_id", pa.int64()),
        ("params", pa.list_(pa.string())),
        ("label", pa.int8()),
        ("content", pa.string()),
    ]
)

TEMPLATES = pa.schema(
    [("template_id", pa.int64()), ("template", pa.string()), ("count", pa.int64())]
)

WINDOWS = pa.schema(
    [
        ("window_id", pa.string()),
        ("session", pa.string()),
        ("first_file", pa.string()),
        ("first_line", pa.int64()),
        ("last_file", pa.string()),
        ("last_line", pa.int64()),
        ("start_ts", pa.timestamp("us")),
        ("end_ts", pa.timestamp("us")),
        ("n_lines", pa.int64()),
        ("template_ids", pa.list_(pa.int64())),
        ("levels", pa.list_(pa.string())),  # each line's raw level, in template_ids order; null: no levels
        ("label", pa.int8()),
        ("split", pa.string()),
    ]
)

QUARANTINE = pa.schema(
    [("file", pa.string()), ("line_no", pa.int64()), ("raw", pa.binary()), ("reason", pa.string())]
)

SCORES = pa.schema(
    [
        ("window_id", pa.string()),
        ("score", pa.float64()),
        ("label", pa.int8()),
        ("route", pa.string()),
        ("scorer", pa.string()),
        ("round", pa.int16()),
        ("flagged_by", pa.list_(pa.string())),  # the views whose own cut flags the window (null: not a fusion)
        ("evidence", pa.map_(pa.string(), pa.float64())),  # view -> its share of the fused log-odds, or its score
    ]
)

# what every entry of distill/<target>/rounds.json holds; f1_labeled is for evaluation only (target labels)
ROUND_KEYS = ("round", "epsilon", "labeled", "agreed", "kept", "kept_total", "clean_ratio", "f1_labeled",
              "llm_calls", "cache_hits", "seconds")

TABLES = {"lines": LINES, "templates": TEMPLATES, "windows": WINDOWS, "quarantine": QUARANTINE}


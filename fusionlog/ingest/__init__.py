"""Ingest: raw archives -> Parquet (lines, templates, windows, quarantine)."""

"""Thin entrypoints for `ray job submit -- python -m jobs.<name>` (no logic of their own)."""

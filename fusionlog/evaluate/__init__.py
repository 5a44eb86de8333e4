"""Evaluation: metrics, baselines, reports."""

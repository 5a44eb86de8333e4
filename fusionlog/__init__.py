"""FusionLog: zero-label cross-system log anomaly detection."""

__version__ = "0.1.0"

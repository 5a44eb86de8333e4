"""What a person sees: progress lines with counts, rate and time left; library chatter in the run's log file."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from fusionlog.console import PlainReporter, eta, quiet_logs


def test_plain_progress_lines_have_counts_rate_and_time_left() -> None:
    lines: list[str] = []
    rep = PlainReporter(lines.append, every_s=0.0)
    with rep.bar("LLM calls") as tick:
        for i in range(5):
            tick(i, 4)
    assert lines[0].startswith("LLM calls: 1/4 (") and "s left" in lines[0]
    assert lines[-1].startswith("LLM calls: 4/4 (") and "left" not in lines[-1]
    assert eta(2, 4, 4.0) == "2/4 (0.50/s, ~4 s left)"


def test_quiet_logs_sends_stderr_and_library_loggers_to_the_file(tmp_path: Path) -> None:
    """C-level writes to fd 2 (as Ray's core and Spark's JVM do) and the chatty loggers go to the log file; the
    console keeps stdout; everything is restored afterwards, also after an error."""
    script = f"""
import logging, os, sys
from pathlib import Path
from fusionlog.console import quiet_logs
logging.basicConfig(level=logging.INFO)
try:
    with quiet_logs(Path({str(tmp_path / 'logs' / 'run.log')!r})):
        os.write(2, b"core_worker.cc: C++ chatter\\n")
        logging.getLogger("ray.serve").warning("deployment options {{...}}")
        print("[stage] done", flush=True)
        raise RuntimeError("boom")
except RuntimeError:
    pass
os.write(2, b"after: visible\\n")
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    log = (tmp_path / "logs" / "run.log").read_text()
    assert "C++ chatter" in log and "deployment options" in log
    assert "C++ chatter" not in out.stderr and "deployment options" not in out.stderr
    assert "[stage] done" in out.stdout and "after: visible" in out.stderr


def test_verbose_redirects_nothing(tmp_path: Path) -> None:
    with quiet_logs(tmp_path / "x.log", verbose=True) as log:
        logging.getLogger("ray").info("kept")
    assert log is None and not (tmp_path / "x.log").exists()

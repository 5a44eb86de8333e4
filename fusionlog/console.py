"""What a person watching a run sees: stage lines, progress bars with counts, rate and time left, and errors;
the chatter of Ray, Serve, vLLM and Spark goes to a log file in the run directory (``--verbose`` keeps it on
the console).

A :class:`Reporter` is handed to the stages: ``say(line)`` and ``bar(what)``, a context manager yielding
``tick(done, total)``. :class:`RichReporter` draws rich progress bars (the CLI); :class:`PlainReporter` prints a
line every few seconds (logs of ``ray job submit``, tests); the default does nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

Tick = Callable[[int, int], None]
CHATTY = ("ray", "ray.serve", "ray.data", "ray.train", "ray.tune", "vllm", "py4j", "pyspark", "filelock", "urllib3",
          "httpx", "transformers", "sentence_transformers", "lancedb", "torch")


class Reporter:
    """Stage lines and progress; this base class is silent."""

    def say(self, msg: str) -> None:  # noqa: D102
        pass

    @contextlib.contextmanager
    def bar(self, what: str) -> Iterator[Tick]:
        """A progress bar for ``what``; call the yielded ``tick(done, total)`` as work finishes."""
        yield lambda _done, _total: None


def eta(done: int, total: int, seconds: float) -> str:
    """``done/total, rate/s, ~left`` for a plain progress line."""
    rate = done / seconds if seconds > 0 else 0.0
    left = f", ~{(total - done) / rate:.0f} s left" if rate > 0 and total > done else ""
    return f"{done}/{total} ({rate:.2f}/s{left})"


class PlainReporter(Reporter):
    """Lines through ``say`` (a progress line at most every ``every_s`` seconds, and at the end)."""

    def __init__(self, say: Callable[[str], None], every_s: float = 10.0) -> None:
        self._say, self.every_s = say, every_s

    def say(self, msg: str) -> None:  # noqa: D102
        self._say(msg)

    @contextlib.contextmanager
    def bar(self, what: str) -> Iterator[Tick]:  # noqa: D102
        t0, last, state = time.perf_counter(), [0.0], [0, 0]

        def tick(done: int, total: int) -> None:
            state[:] = [done, total]
            now = time.perf_counter()
            if now - last[0] >= self.every_s and 0 < done < total:
                last[0] = now
                self._say(f"{what}: {eta(done, total, now - t0)}")

        yield tick
        if state[1]:
            self._say(f"{what}: {eta(state[0], state[1], time.perf_counter() - t0)}")


class RichReporter(Reporter):
    """Rich progress bars (description, bar, done/total, rate, elapsed, time left) on ``console``."""

    def __init__(self, console) -> None:  # noqa: ANN001 (rich.console.Console)
        self.console = console

    def say(self, msg: str) -> None:  # noqa: D102
        from rich.markup import escape

        self.console.print(escape(msg), style="dim")

    @contextlib.contextmanager
    def bar(self, what: str) -> Iterator[Tick]:  # noqa: D102
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        class Rate(TextColumn):
            def render(self, task):  # noqa: ANN001, ANN202
                from rich.text import Text

                speed = task.finished_speed or task.speed
                return Text(f"{speed:.2f}/s" if speed else "-/s", style="cyan")

        cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                Rate(""), TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn())
        with Progress(*cols, console=self.console, transient=False) as prog:
            task = prog.add_task(what, total=None)

            def tick(done: int, total: int) -> None:
                prog.update(task, completed=done, total=total)

            yield tick


@contextlib.contextmanager
def quiet_logs(log_file: Path, verbose: bool = False) -> Iterator[Path | None]:
    """Send the process's stderr (file descriptor 2: Ray's C++ core, Spark's JVM, vLLM, Python warnings) and the
    chatty libraries' loggers to ``log_file``; the console (stdout) keeps stage lines, progress and errors.
    With ``verbose`` nothing is redirected. Restores everything on exit, also on an error."""
    if verbose:
        yield None
        return
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved_fd = os.dup(2)
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved: dict[str, tuple[list, bool]] = {}
    with open(log_file, "ab", buffering=0) as sink:
        os.dup2(sink.fileno(), 2)
        for name in CHATTY:
            lg = logging.getLogger(name)
            saved[name] = (list(lg.handlers), lg.propagate)
            lg.handlers, lg.propagate = [handler], False
        try:
            yield log_file
        finally:
            # py4j logs its connection closing at interpreter exit, after this block: keep that out of the console
            logging.getLogger("py4j").setLevel(logging.WARNING)
            sys.stderr.flush()
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            for name, (handlers, propagate) in saved.items():
                lg = logging.getLogger(name)
                lg.handlers, lg.propagate = handlers, propagate
            handler.close()

"""Sampling profiles of the benchmark's children with py-spy, summarised as text.

`make bench BENCH_ARGS=--profile` attaches `py-spy record` to the process under load in each
phase (the API for intake and webhooks, the worker for dispatch and latency) and writes
`out/profile-PHASE-CHILD.folded` (flame-graph input) and `.txt` (the functions holding the
most samples, inclusive and self). Sampling pauses the process, so a profiled run's figures
are not the reference figures: profile to find where the time goes, measure without.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

SAMPLE_RATE_HZ = 250
# Frames every sample shares (interpreter start-up, the event loop) say nothing.
_BORING = ("<frozen runpy>", "cli.py", "runners.py", "base_events.py", "_compat.py")


@contextlib.contextmanager
def sampled(enabled: bool, pid: int, output: Path, delay_s: float = 0.0) -> Iterator[None]:
    """Record `pid` with py-spy while the block runs, if `enabled` and py-spy is installed.

    `delay_s` skips the block's first seconds (a process's start-up is not its hot path).
    """
    # The venv's bin directory is not necessarily on PATH.
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if not enabled or spy is None:
        yield
        return
    command = [spy, "record", "-p", str(pid), "-r", str(SAMPLE_RATE_HZ), "-f", "raw"]
    command += ["-o", str(output)]
    started: list[subprocess.Popen[bytes]] = []

    def attach() -> None:
        started.append(
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )

    timer = threading.Timer(delay_s, attach)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()
        for process in started:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if output.exists():
            output.with_suffix(".txt").write_text(summarise(output))


def _frame(frame: str) -> str:
    name, _, where = frame.partition(" (")
    return f"{name} ({where.split(':')[0].rsplit('/', 1)[-1]}" + (")" if where else "")


def summarise(folded: Path, top: int = 40) -> str:
    """The functions with the most samples, inclusive and self, as percentages of all."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_frame(f) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    if not total:
        return "no samples\n"
    lines = [f"{total} samples", "", "inclusive:"]
    lines += [
        f"{100 * n / total:5.1f}%  {frame}"
        for frame, n in inclusive.most_common(top * 2)
        if not any(boring in frame for boring in _BORING)
    ][:top]
    lines += ["", "self:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    return "\n".join(lines) + "\n"

"""Many cells in one kernel: the cell each step runs and what is measured
about the kernel process (resident memory, open file descriptors, threads).
Used by benches/soak.py (500 cells, figures) and test_soak.py (a shorter
run in CI that checks the kernel returns to its warmed-up level)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class Sample:
    """The kernel process at one moment."""

    rss_kib: int
    fds: int
    threads: int

    def __str__(self) -> str:
        return f"RSS {self.rss_kib / 1024:.1f} MiB, {self.fds} fds, {self.threads} threads"


def sample(pid: int) -> Sample:
    """Reads /proc/PID: VmRSS, the entries of fd/ and of task/."""
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return Sample(rss, len(os.listdir(f"/proc/{pid}/fd")), len(os.listdir(f"/proc/{pid}/task")))


def settled(pid: int, ceiling: Sample, timeout: float = 30.0) -> Sample:
    """Samples until fds and threads are at or below ``ceiling`` (idle
    connections and blocking-pool threads go after their idle timeouts), or
    the timeout passes; returns the last sample."""
    deadline = time.monotonic() + timeout
    while True:
        s = sample(pid)
        if (s.fds <= ceiling.fds and s.threads <= ceiling.threads) or time.monotonic() > deadline:
            return s
        time.sleep(0.5)


def kernel_pid(km: Any) -> int:
    """The kernel's process id (jupyter_client 8: through its provisioner)."""
    return km.provisioner.process.pid


def cell(i: int) -> str:
    """A real small job: a fresh cell (so a new layer is built and pushed), submitted and streamed."""
    return f"%framework=python\n%cleanPolicy=all\nprint('soak cell {i}', flush=True)\n"


def run_cell(kc: Any, code: str, timeout: float = 180) -> tuple[dict[str, Any], list[dict[str, Any]], float]:
    """Runs ``code``; returns the reply, the iopub messages of the cell and the seconds it took."""
    from cluster import collect

    started = time.perf_counter()
    run = collect(kc, kc.execute(code), timeout=timeout)
    return run.reply, run.messages, time.perf_counter() - started


def stdout_lines(messages: list[dict[str, Any]]) -> list[str]:
    text = "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream" and m["content"]["name"] == "stdout")
    return [line.rsplit("\r", 1)[-1] for line in text.split("\n")[:-1]]

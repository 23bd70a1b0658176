"""One kernel, many cells in a row, each a real small job (build, push,
submit, stream) against the real registry and the API stand-in: after a
warm-up, the kernel's open file descriptors and threads come back to their
warmed-up level and its resident memory stays within a generous bound.
Not a timing test (benches/soak.py runs 500 cells and prints the figures)."""

from __future__ import annotations

import pytest
from jupyter_client.manager import start_new_kernel

from cluster import stack
from conftest import KERNEL_NAME, kernel_env
from soak_support import cell, kernel_pid, run_cell, sample, settled, stdout_lines

CELLS = 60
WARM_UP = 10
# Resident memory may grow this much between the end of the warm-up and the
# last cell (allocator fragmentation, caches filling); a leak of a few KiB
# per cell would pass it only over far more cells than a session runs.
RSS_GROWTH_KIB = 24 * 1024


@pytest.fixture(scope="module")
def soak_kernel(tmp_path_factory):
    kube = stack()
    env = kernel_env(tmp_path_factory.mktemp("data"), **kube.kernel_env())
    km, kc = start_new_kernel(kernel_name=KERNEL_NAME, env=env, startup_timeout=60)
    yield km, kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def test_after_warm_up_many_jobs_leave_fds_threads_and_memory_where_they_were(soak_kernel) -> None:
    km, kc = soak_kernel
    pid = kernel_pid(km)
    warm = None
    ceiling = None
    for i in range(CELLS):
        reply, messages, _ = run_cell(kc, cell(i))
        assert reply["content"]["status"] == "ok", (i, reply["content"], messages[-5:])
        assert stdout_lines(messages) == [f"[main-0] soak cell {i}"], messages
        s = sample(pid)
        if i == WARM_UP - 1:
            warm = settled(pid, s, timeout=1)
            ceiling = warm
        elif i >= WARM_UP and i < 2 * WARM_UP:
            # The warmed-up level: the most seen over the cells right after the warm-up.
            ceiling = type(s)(max(ceiling.rss_kib, s.rss_kib), max(ceiling.fds, s.fds), max(ceiling.threads, s.threads))
    assert warm is not None and ceiling is not None
    end = settled(pid, ceiling)
    print(f"\nafter warm-up: {warm}; warmed-up ceiling: {ceiling}; after {CELLS} cells: {end}")
    assert end.fds <= ceiling.fds, f"file descriptors grew: {warm} -> {end}"
    assert end.threads <= ceiling.threads, f"threads grew: {warm} -> {end}"
    assert end.rss_kib - warm.rss_kib <= RSS_GROWTH_KIB, f"resident memory grew: {warm} -> {end}"

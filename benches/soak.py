#!/usr/bin/env python3
"""Soak: many cells in a row in ONE kernel, each a real small job (a fresh
cell built into an image and pushed to a real docker-registry, a batch Job
submitted to the Kubernetes API stand-in, its log streamed back), driven by
jupyter_client as a notebook would.

Prints the kernel's resident memory (VmRSS) at start, after the warm-up and
at the end, its open file descriptors (/proc/PID/fd) and threads
(/proc/PID/task) at start, after the warm-up and at the end (once idle
connections and pool threads have had their idle timeouts), and the time per
cell (p50, p90, p99, max; first and last 50 cells).

Usage (from the repository root, after `cargo build --release --workspace --bins`):
    python3 benches/soak.py [--cells 500] [--warm-up 20] [--debug]
Needs docker-registry, skopeo, umoci, python3 with jupyter_client.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=500)
    ap.add_argument("--warm-up", type=int, default=20)
    ap.add_argument("--debug", action="store_true", help="use target/debug binaries")
    args = ap.parse_args()
    profile = "debug" if args.debug else "release"
    ciao = pathlib.Path(os.environ.get("CIAO_BIN", ROOT / "target" / profile / "ciao"))
    os.environ.setdefault("FAKE_CLUSTER_BIN", str(ROOT / "target" / profile / "fake-cluster"))

    from jupyter_client.manager import start_new_kernel

    from cluster import Stack
    from soak_support import cell, kernel_pid, run_cell, sample, settled, stdout_lines

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="ciao-soak-"))
    prefix = tmp / "prefix"
    subprocess.run([str(ciao), "install", "--prefix", str(prefix)], check=True, capture_output=True)
    for d in ("home", "data", "runtime", "config"):
        (tmp / d).mkdir()
    stack = Stack()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CIAO_", "KUBE", "JUPYTER_"))},
        "HOME": str(tmp / "home"), "CIAO_HOME": str(tmp / "home" / ".ciao"),
        "JUPYTER_PATH": str(prefix / "share" / "jupyter"), "JUPYTER_DATA_DIR": str(tmp / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"), "JUPYTER_CONFIG_DIR": str(tmp / "config"),
        "CIAO_LOG": "warn",
        **stack.kernel_env(),
    }
    os.environ.update({k: env[k] for k in ("JUPYTER_PATH", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_CONFIG_DIR")})
    km, kc = start_new_kernel(kernel_name="ciao", env=env, startup_timeout=60)
    try:
        pid = kernel_pid(km)
        start = sample(pid)
        print(f"kernel {pid} ({ciao}), {args.cells} cells, warm-up {args.warm_up}")
        print(f"start:          {start}")
        times: list[float] = []
        warm = start
        began = time.perf_counter()
        for i in range(args.cells):
            reply, messages, seconds = run_cell(kc, cell(i))
            if reply["content"]["status"] != "ok" or stdout_lines(messages) != [f"[main-0] soak cell {i}"]:
                raise SystemExit(f"cell {i} failed: {reply['content']} {stdout_lines(messages)}")
            times.append(seconds)
            if i + 1 == args.warm_up:
                warm = sample(pid)
                print(f"after warm-up:  {warm}")
            if (i + 1) % 100 == 0:
                print(f"  {i + 1:>4} cells: {sample(pid)}, last 100 p50 {statistics.median(times[-100:]) * 1000:.0f} ms", flush=True)
        total = time.perf_counter() - began
        end_busy = sample(pid)
        end = settled(pid, warm, timeout=100)
        print(f"end (at once):  {end_busy}")
        print(f"end (settled):  {end}")
        print(f"RSS growth after warm-up: {(end.rss_kib - warm.rss_kib) / 1024:+.1f} MiB "
              f"({(end.rss_kib - warm.rss_kib) / max(1, args.cells - args.warm_up):+.2f} KiB per cell)")
        ms = [t * 1000 for t in times]
        print(f"per cell: p50 {statistics.median(ms):.0f} ms, p90 {percentile(ms, 90):.0f} ms, p99 {percentile(ms, 99):.0f} ms, "
              f"max {max(ms):.0f} ms, mean {statistics.mean(ms):.0f} ms; first 50 p50 {statistics.median(ms[:50]):.0f} ms, "
              f"last 50 p50 {statistics.median(ms[-50:]):.0f} ms; {total:.1f} s in all")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        stack.stop()


if __name__ == "__main__":
    main()

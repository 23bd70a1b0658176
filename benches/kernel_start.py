#!/usr/bin/env python3
"""Kernel start-up: ciao next to ipykernel, measured the same way.

For each run: write a connection file, spawn the kernel process, connect a
DEALER socket to its shell port and send a signed kernel_info_request every
few milliseconds until a kernel_info_reply arrives. The time from spawning the
process to receiving that reply is the start-up time (no jupyter_client
polling in between). After the reply, the kernel's resident memory
(VmRSS from /proc/PID/status) is read once it has settled.

Usage:
    python3 benches/kernel_start.py [--runs N] [--ciao PATH] [--interval-ms MS]

PATH defaults to target/release/ciao (build it with `cargo build --release`).
Goals for ciao: at least 10x faster than ipykernel and at most 20 MiB RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import zmq
from jupyter_client.connect import write_connection_file
from jupyter_client.session import Session

REPO = pathlib.Path(__file__).resolve().parents[1]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def one_run(argv_for: "callable", env: dict[str, str], interval: float, tmp: pathlib.Path) -> tuple[float, int]:
    conn = tmp / f"kernel-{time.monotonic_ns()}.json"
    key = os.urandom(16).hex()
    write_connection_file(str(conn), key=key.encode())
    info = json.loads(conn.read_text())
    session = Session(key=key.encode(), signature_scheme="hmac-sha256", username="bench")
    ctx = zmq.Context.instance()
    shell = ctx.socket(zmq.DEALER)
    shell.linger = 0
    # libzmq retries a refused connection every 100 ms by default; the kernel
    # is not listening yet, so retry every millisecond to not measure that.
    shell.setsockopt(zmq.RECONNECT_IVL, 1)
    shell.setsockopt(zmq.RECONNECT_IVL_MAX, 1)
    shell.connect(f"tcp://{info['ip']}:{info['shell_port']}")

    start = time.perf_counter()
    proc = subprocess.Popen(argv_for(str(conn)), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        elapsed = None
        deadline = start + 60
        while time.perf_counter() < deadline:
            shell.send_multipart(session.serialize(session.msg("kernel_info_request", {})))
            if shell.poll(int(interval * 1000)):
                frames = shell.recv_multipart()
                _, msg_list = session.feed_identities(frames)
                msg = session.deserialize(msg_list)
                if msg["msg_type"] == "kernel_info_reply":
                    elapsed = time.perf_counter() - start
                    break
            if proc.poll() is not None:
                raise RuntimeError(f"{argv_for('X')} exited with {proc.returncode}")
        if elapsed is None:
            raise RuntimeError("no kernel_info_reply within 60 s")
        # Let replies to the extra requests drain and the process settle before reading RSS.
        time.sleep(0.5)
        rss = rss_kib(proc.pid)
        return elapsed, rss
    finally:
        proc.kill()
        proc.wait()
        shell.close()
        conn.unlink(missing_ok=True)


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--ciao", default=str(REPO / "target" / "release" / "ciao"))
    ap.add_argument("--interval-ms", type=float, default=2.0, help="how often kernel_info_request is re-sent")
    args = ap.parse_args()

    if not pathlib.Path(args.ciao).is_file():
        print(f"{args.ciao} not found: run `cargo build --release` first", file=sys.stderr)
        return 2

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="ciao-bench-"))
    env = dict(os.environ)
    for d in ("home", "jupyter-data", "ciao-home"):
        (tmp / d).mkdir()
    env.update(HOME=str(tmp / "home"), JUPYTER_DATA_DIR=str(tmp / "jupyter-data"), CIAO_HOME=str(tmp / "ciao-home"), CIAO_LOG="warn")

    kernels = {
        "ciao": lambda c: [args.ciao, "kernel", "--connection-file", c],
        "ipykernel": lambda c: [sys.executable, "-m", "ipykernel_launcher", "-f", c],
    }
    results: dict[str, tuple[list[float], list[int]]] = {}
    for name, argv_for in kernels.items():
        one_run(argv_for, env, args.interval_ms / 1000, tmp)  # warm the page cache
        times, rss = [], []
        for _ in range(args.runs):
            t, r = one_run(argv_for, env, args.interval_ms / 1000, tmp)
            times.append(t)
            rss.append(r)
        results[name] = (times, rss)

    print(f"kernel start-up to first kernel_info_reply, {args.runs} runs each (re-sent every {args.interval_ms:g} ms)")
    print(f"{'kernel':<10} {'median ms':>10} {'p90 ms':>10} {'min ms':>10} {'idle RSS MiB (median)':>22}")
    for name, (times, rss) in results.items():
        print(
            f"{name:<10} {statistics.median(times) * 1000:>10.1f} {percentile(times, 0.9) * 1000:>10.1f} "
            f"{min(times) * 1000:>10.1f} {statistics.median(rss) / 1024:>22.1f}"
        )
    ciao_t, ciao_rss = statistics.median(results["ciao"][0]), statistics.median(results["ciao"][1]) / 1024
    ipy_t = statistics.median(results["ipykernel"][0])
    speedup = ipy_t / ciao_t
    print(f"ciao starts {speedup:.0f}x faster than ipykernel (goal >= 10x); idle RSS {ciao_rss:.1f} MiB (goal <= 20 MiB)")
    ok = speedup >= 10 and ciao_rss <= 20
    print("goals met" if ok else "GOALS NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

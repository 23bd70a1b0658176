#!/usr/bin/env python3
"""The Kubernetes backend through the real kernel, against the Kubernetes API
stand-in (``fake-cluster``, a stand-in for tests and demos, not an API
server) and a real docker-registry; all on this machine.

Three figures, each driven by jupyter_client the way a notebook would:
  * submit: from sending execute_request to the job's creation, seen as the
    ``[ciao] … created`` line arriving on iopub (an upper bound: the job
    exists just before the line is sent), warm (client, discovery, registry
    session and base manifest cached by earlier cells); image provider (a
    fresh 1-line cell built and pushed each time) and ConfigMap provider.
    Goal: <= 50 ms p50.
  * interrupt: from interrupt_request to the idle status of an interrupted
    running job (deleted, %onInterrupt's default). Goal: <= 1 s.
  * log fan-in: 32 replicas (a JAXJob, %worker=32) writing lines that
    carry their send time; at the client: lines per second over the stream
    and each line's latency (arrival of its stream message minus its send
    time). Paced at 100k lines/s in total, and unpaced (as fast as the
    replicas can write); with every replica starting to write at the same
    moment once all pods run (the streaming itself), and with each writing
    as soon as it starts (adds the pods' start-up on this 2-core machine,
    when 32 interpreters start at once). Goals: >= 100k lines/s, p99 <= 100 ms.

Usage (from the repository root, after `cargo build --release --workspace --bins`):
    python3 benches/kubernetes.py [--runs N] [--seconds S] [--debug]
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
from queue import Empty

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


class Kernel:
    def __init__(self, ciao: pathlib.Path, env: dict[str, str], tmp: pathlib.Path) -> None:
        from jupyter_client.manager import start_new_kernel

        prefix = tmp / "prefix"
        subprocess.run([str(ciao), "install", "--prefix", str(prefix)], check=True, capture_output=True)
        for d in ("home", "data", "runtime", "config"):
            (tmp / d).mkdir(exist_ok=True)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("CIAO_", "KUBE", "JUPYTER_"))},
            "HOME": str(tmp / "home"),
            "CIAO_HOME": str(tmp / "home" / ".ciao"),
            "JUPYTER_PATH": str(prefix / "share" / "jupyter"),
            "JUPYTER_DATA_DIR": str(tmp / "data"),
            "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
            "JUPYTER_CONFIG_DIR": str(tmp / "config"),
            "CIAO_LOG": "warn",
            **env,
        }
        saved = dict(os.environ)
        os.environ.update({k: env[k] for k in ("JUPYTER_PATH", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_CONFIG_DIR")})
        try:
            self.km, self.kc = start_new_kernel(kernel_name="ciao", env=env, startup_timeout=60)
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def run(self, code: str, on_message=None, timeout: float = 300) -> dict:
        """Runs a cell; calls on_message(msg, now) for each iopub output; returns the reply."""
        msg_id = self.kc.execute(code)
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
            except Empty:
                raise SystemExit(f"the cell did not finish: {code[:60]!r}")
            now = time.time()
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status":
                if msg["content"]["execution_state"] == "idle":
                    break
                continue
            if on_message:
                on_message(msg, now)
        while True:
            reply = self.kc.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply

    def stop(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def created_latency(kernel: Kernel, code: str) -> float:
    seen: list[float] = []
    start = time.perf_counter()

    def watch(msg, _now):
        if not seen and msg["msg_type"] == "stream" and " created: " in msg["content"]["text"]:
            seen.append(time.perf_counter())

    reply = kernel.run(code, watch)
    if reply["content"]["status"] != "ok" or not seen:
        raise SystemExit(f"the cell failed: {reply['content']}")
    return seen[0] - start


def bench_submit(kernel: Kernel, runs: int) -> None:
    tag = time.time_ns()
    for provider in ("image", "configmap"):
        magic = "%provider=configmap\n" if provider == "configmap" else ""
        created_latency(kernel, f"{magic}print('warm-up {tag}')")
        values = [created_latency(kernel, f"{magic}print('cell {tag} {i}')") for i in range(runs)]
        print(f"submit ({provider} provider, warm, {runs} cells): execute_request -> job created: "
              f"p50 {ms(statistics.median(values))}, p90 {ms(percentile(values, 90))}, max {ms(max(values))}  (goal p50 <= 50 ms)")


def bench_interrupt(kernel: Kernel, runs: int) -> None:
    values = []
    for i in range(runs):
        msg_id = kernel.kc.execute(f"import time\nprint('started {i}', flush=True)\ntime.sleep(600)\n")
        sent = None
        while True:
            msg = kernel.kc.get_iopub_msg(timeout=120)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if sent is None and msg["msg_type"] == "stream" and "[main-0] started" in msg["content"]["text"]:
                sent = time.perf_counter()
                kernel.km.interrupt_kernel()
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                values.append(time.perf_counter() - sent)
                break
        kernel.kc.get_shell_msg(timeout=60)
    print(f"interrupt -> idle ({runs} runs, job deleted): p50 {ms(statistics.median(values))}, max {ms(max(values))}  (goal <= 1 s)")


# Latency is taken for every SAMPLE-th line of each stream message.
SAMPLE = 8

FAN_IN = """%framework=jax
%worker={replicas}
import os, sys, time
rank = int(os.environ['PROCESS_ID'])
total, rate, seconds, begin = {total}, {rate}, {seconds}, {begin}
w = sys.stdout.write
if begin:
    time.sleep(max(0, begin - time.time()))
start = time.time()
for i in range(total):
    if rate and i % 50 == 0:
        ahead = start + i / rate - time.time()
        if ahead > 0:
            time.sleep(ahead)
    w('%.6f %d %d\\n' % (time.time(), rank, i))
"""


def bench_fan_in(kernel: Kernel, seconds: float, paced: bool, replicas: int = 32, rate: float = 100_000, barrier: float = 0) -> None:
    """`barrier`: seconds after submission at which every replica starts
    writing (all pods up and their streams open); 0 starts as each pod starts."""
    per_replica_rate = rate / replicas
    total = int(per_replica_rate * seconds)
    begin = time.time() + barrier if barrier else 0
    code = FAN_IN.format(replicas=replicas, total=total, rate=per_replica_rate if paced else 0, seconds=seconds, begin=begin)
    latencies: list[float] = []
    arrivals: list[float] = []
    count = [0]

    def watch(msg, now):
        # Every line is counted; the latency of every 8th line is taken (an
        # unbiased sample), so the client's own work competes less with the
        # pipeline it measures on this small machine.
        if msg["msg_type"] != "stream" or msg["content"]["name"] != "stdout":
            return
        text = msg["content"]["text"]
        count[0] += text.count("\n[worker-") + text.startswith("[worker-")
        for line in text.split("\n")[::SAMPLE]:
            parts = line.split(" ")
            if len(parts) == 4 and parts[0].startswith("[worker-"):
                latencies.append(now - float(parts[1]))
        arrivals.append(now)

    reply = kernel.run(code, watch, timeout=600)
    expected = total * replicas
    if reply["content"]["status"] != "ok" or count[0] != expected:
        raise SystemExit(f"fan-in: {count[0]} of {expected} lines; {reply['content']}")
    span = arrivals[-1] - arrivals[0]
    label = f"paced at {rate:,.0f} lines/s" if paced else "unpaced"
    label += f", replicas start together {barrier:.0f} s after submission" if barrier else ", each replica writes as soon as it starts"
    print(f"log fan-in, {replicas} replicas, {label}: {expected} lines in {span:.2f} s = {expected / span:,.0f} lines/s at the client; "
          f"latency p50 {ms(statistics.median(latencies))}, p99 {ms(percentile(latencies, 99))}, max {ms(max(latencies))}  "
          f"(goals >= 100k lines/s, p99 <= 100 ms)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--debug", action="store_true", help="use target/debug binaries")
    ap.add_argument("--only-fan-in", action="store_true", help="skip the submit and interrupt figures")
    ap.add_argument("--replicas", type=int, default=32)
    ap.add_argument("--rate", type=float, default=100_000, help="paced lines/s in total")
    ap.add_argument("--barrier", type=float, default=6.0, help="seconds after submission when all replicas start writing")
    args = ap.parse_args()
    profile = "debug" if args.debug else "release"
    os.environ.setdefault("FAKE_CLUSTER_BIN", str(ROOT / "target" / profile / "fake-cluster"))
    ciao = pathlib.Path(os.environ.get("CIAO_BIN", ROOT / "target" / profile / "ciao"))
    if not ciao.is_file():
        raise SystemExit(f"{ciao} not found: cargo build {'--release ' if profile == 'release' else ''}--workspace --bins")
    from cluster import stack

    s = stack()
    with tempfile.TemporaryDirectory(prefix="ciao-bench-") as tmp:
        kernel = Kernel(ciao, s.kernel_env(), pathlib.Path(tmp))
        try:
            print(f"ciao {ciao}, fake-cluster {os.environ['FAKE_CLUSTER_BIN']}, {os.cpu_count()} CPUs")
            if not args.only_fan_in:
                bench_submit(kernel, args.runs)
                bench_interrupt(kernel, max(3, args.runs // 4))
            for barrier in (args.barrier, 0):
                bench_fan_in(kernel, args.seconds, paced=True, replicas=args.replicas, rate=args.rate, barrier=barrier)
                bench_fan_in(kernel, args.seconds, paced=False, replicas=args.replicas, rate=args.rate, barrier=barrier)
        finally:
            kernel.stop()


if __name__ == "__main__":
    main()

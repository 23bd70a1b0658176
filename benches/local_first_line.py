#!/usr/bin/env python3
"""Local backend: from execute_request to the first replica line.

Drives the real kernel (release build) over jupyter_client with no cluster
and no registry configured, so every cell is built into the local OCI layout
and run as local processes. For each run it sends an execute_request for a
one-worker TensorFlow-style cell and measures the time until the first
iopub stream message carrying a `[worker-0] ` line arrives, and until the
execute_reply.

Three cases:
  cold    the first cell of a fresh kernel (base lookup, Python discovery);
  same    the same cell again (every layer already in the layout);
  edited  a new cell each time (a new code layer to write).

Usage:
    python3 benches/local_first_line.py [--runs N] [--ciao PATH]

Goal: at most 100 ms from execute_request to the first line (warm). For
comparison, the Kubeflow SDK 0.5.0 local-process backend takes a median 2.5 s
from `train()` to the first line on this machine (a fresh virtualenv and
ensurepip per job, then torchrun), runs one process whatever the node count,
injects no rank variables, and prints followed lines twice (measured
separately on the same machine; this script does not install the SDK).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time
from queue import Empty

from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import KernelManager

REPO = pathlib.Path(__file__).resolve().parents[1]

CELL = '%framework=tensorflow\n%worker=1\nprint("hello {n}")\n'


class Kernel:
    def __init__(self, ciao: pathlib.Path, root: pathlib.Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CIAO_", "KUBE", "JUPYTER_", "JPY_"))}
        for d in ("home", "ciao-home", "tmp", "run"):
            (root / d).mkdir()
        env.update(HOME=str(root / "home"), CIAO_HOME=str(root / "ciao-home"), TMPDIR=str(root / "tmp"),
                   XDG_RUNTIME_DIR=str(root / "run"), CIAO_LOG="warn")
        self.km = KernelManager()
        self.km._kernel_spec = KernelSpec(  # noqa: SLF001 - the binary under test, not an installed kernelspec
            argv=[str(ciao), "kernel", "--connection-file", "{connection_file}"],
            display_name="ciao", language="python", interrupt_mode="message",
        )
        self.km.start_kernel(env=env, cwd=str(root))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=30)

    def time_cell(self, code: str) -> tuple[float, float]:
        """Seconds to the first `[worker-0] ` line and to the reply."""
        start = time.perf_counter()
        msg_id = self.kc.execute(code)
        first = None
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=60)
            except Empty:
                raise RuntimeError("no output within 60 s") from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream" and first is None and "[worker-0] " in msg["content"]["text"]:
                first = time.perf_counter() - start
            if msg["msg_type"] == "error":
                raise RuntimeError(f"the cell failed: {msg['content']['evalue']}")
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        reply = self.kc.get_shell_msg(timeout=60)
        done = time.perf_counter() - start
        if reply["content"]["status"] != "ok" or first is None:
            raise RuntimeError(f"unexpected reply {reply['content']['status']}, first line {first}")
        return first, done

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def ms(xs: list[float]) -> str:
    return f"median {statistics.median(xs) * 1000:6.1f} ms  (min {min(xs) * 1000:.1f}, max {max(xs) * 1000:.1f}, n={len(xs)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--ciao", type=pathlib.Path, default=REPO / "target" / "release" / "ciao")
    args = ap.parse_args()
    if not args.ciao.is_file():
        sys.exit(f"{args.ciao} not found: build it with `cargo build --release`")

    cold_first, cold_done, same, same_done, edited, edited_done = [], [], [], [], [], []
    for run in range(args.runs):
        root = pathlib.Path(tempfile.mkdtemp(prefix="ciao-bench-"))
        k = Kernel(args.ciao, root)
        try:
            f, d = k.time_cell(CELL.format(n=0))
            cold_first.append(f)
            cold_done.append(d)
            f, d = k.time_cell(CELL.format(n=0))
            same.append(f)
            same_done.append(d)
            f, d = k.time_cell(CELL.format(n=run + 1))
            edited.append(f)
            edited_done.append(d)
        finally:
            k.close()
            shutil.rmtree(root, ignore_errors=True)

    print(f"ciao {args.ciao}")
    print(f"cell -> first [worker-0] line, cold kernel : {ms(cold_first)}")
    print(f"cell -> first [worker-0] line, same cell   : {ms(same)}")
    print(f"cell -> first [worker-0] line, edited cell : {ms(edited)}")
    print(f"cell -> reply (job done), same cell        : {ms(same_done)}")
    print(f"cell -> reply (job done), edited cell      : {ms(edited_done)}")
    print("Kubeflow SDK 0.5.0 local-process backend, train() -> first line: median 2.5 s (measured separately)")


if __name__ == "__main__":
    main()

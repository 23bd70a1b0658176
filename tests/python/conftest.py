"""End-to-end tests of the ciao kernel through the real Jupyter client libraries.

Nothing is built here: the binary comes from ``CIAO_BIN`` (default
``target/debug/ciao`` under the repository root). At import time the suite
installs the kernelspec with ``ciao install --prefix`` into a temporary
directory and points every Jupyter and ciao location (``JUPYTER_PATH``,
``JUPYTER_DATA_DIR``, ``HOME``, ``CIAO_HOME``, …) at temporary directories, so
history, config and connection files never touch the real home and parallel
runs never meet.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Iterator

import pytest

import canary

REPO = pathlib.Path(__file__).resolve().parents[2]
CIAO_BIN = pathlib.Path(os.environ.get("CIAO_BIN", REPO / "target" / "debug" / "ciao")).resolve()

if not CIAO_BIN.is_file():
    raise pytest.UsageError(f"ciao binary not found at {CIAO_BIN}: run `cargo build` first or set CIAO_BIN")

# Read CIAO_CANARY_CAPTURE before the CIAO_* variables are cleared below.
canary.install()

# Settings from the developer's environment must not leak into the kernels under test.
for _var in list(os.environ):
    if _var.startswith(("CIAO_", "KUBE", "JUPYTER_", "JPY_")) or _var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_RUNTIME_DIR"):
        del os.environ[_var]

ROOT = pathlib.Path(tempfile.mkdtemp(prefix="ciao-pytest-"))
KERNELSPEC_PREFIX = ROOT / "prefix"
os.environ.update(
    {
        "HOME": str(ROOT / "home"),
        "CIAO_HOME": str(ROOT / "ciao-home"),
        "JUPYTER_PATH": str(KERNELSPEC_PREFIX / "share" / "jupyter"),
        "JUPYTER_DATA_DIR": str(ROOT / "jupyter-data"),
        "JUPYTER_RUNTIME_DIR": str(ROOT / "jupyter-runtime"),
        "JUPYTER_CONFIG_DIR": str(ROOT / "jupyter-config"),
        "JUPYTER_PLATFORM_DIRS": "0",
        "CIAO_LOG": "warn",
    }
)
for _d in ("home", "ciao-home", "jupyter-data", "jupyter-runtime", "jupyter-config"):
    (ROOT / _d).mkdir(parents=True, exist_ok=True)

_install = subprocess.run(
    [str(CIAO_BIN), "install", "--prefix", str(KERNELSPEC_PREFIX)], capture_output=True, text=True, check=False
)
if _install.returncode != 0:
    raise pytest.UsageError(f"`ciao install --prefix` failed: {_install.stderr}")
KERNEL_NAME = "ciao"
KERNELSPEC_DIR = KERNELSPEC_PREFIX / "share" / "jupyter" / "kernels" / KERNEL_NAME


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(ROOT, ignore_errors=True)


def kernel_env(data_dir: pathlib.Path | None = None, **extra: str) -> dict[str, str]:
    """The environment for a kernel process, optionally with its own Jupyter data dir (history)."""
    env = dict(os.environ)
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        env["JUPYTER_DATA_DIR"] = str(data_dir)
    env.update(extra)
    return env


def dryrun_text(resources: str = "(cluster defaults)", backend: str = "local", target: str | None = None) -> str:
    """The text/plain of `%dryrun` for a plain python cell under the test environment (see Plan::to_bundle);
    `target` defaults to the local OCI layout of the `local` backend."""
    if target is None:
        layout = pathlib.Path(os.environ["CIAO_HOME"]) / "oci"
        target = f"oci:{layout}:ciao/python"
    rows = [
        ("framework", "python"),
        ("job kind", "Job (batch/v1)"),
        ("base image", "docker.io/library/python:3.11-slim"),
        ("target", target),
        ("namespace", "(from the cluster configuration)"),
        ("backend", backend),
        ("provider", "image"),
        ("job name", "python-…"),
        ("cleanPolicy", "(operator default)"),
        ("onInterrupt", "delete"),
    ]
    text = "ciao dry run: nothing was built or submitted\n"
    text += "".join(f"  {k:<11} {v}\n" for k, v in rows)
    text += "  replicas:\n"
    text += f"    {'python':<10} {1:>3}  {resources}\n"
    return text


class RawKernel:
    """A kernel process started from a connection file written here, so the
    tests own the process (exit status) and the key (signing by hand)."""

    def __init__(self, tmp: pathlib.Path, env: dict[str, str] | None = None, **conn: Any) -> None:
        from jupyter_client.connect import write_connection_file

        self.connection_file = str(tmp / f"kernel-{time.monotonic_ns()}.json")
        key = conn.pop("key", "a0b1c2d3-test-key")
        write_connection_file(self.connection_file, key=key.encode(), **conn)
        with open(self.connection_file) as f:
            self.info = json.load(f)
        self.stderr_path = tmp / f"kernel-{time.monotonic_ns()}.stderr"
        self._stderr = open(self.stderr_path, "w")
        self.env = env or kernel_env()
        self.proc = subprocess.Popen(
            [str(CIAO_BIN), "kernel", "--connection-file", self.connection_file],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )

    def client(self):
        from jupyter_client.blocking import BlockingKernelClient

        kc = BlockingKernelClient(connection_file=self.connection_file)
        kc.load_connection_file()
        kc.start_channels()
        kc.wait_for_ready(timeout=30)
        return kc

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._stderr.close()
        level = "trace" if "trace" in (self.env.get("CIAO_LOG") or "") else "log"
        canary.capture(f"kernel-{level}", self.stderr_path.read_text(errors="replace"))


@pytest.fixture
def raw_kernel(tmp_path: pathlib.Path) -> Iterator[RawKernel]:
    k = RawKernel(tmp_path, env=kernel_env(tmp_path / "data"))
    yield k
    k.stop()


@pytest.fixture
def kc(raw_kernel: RawKernel):
    client = raw_kernel.client()
    yield client
    client.stop_channels()

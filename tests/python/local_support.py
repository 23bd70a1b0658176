"""Helpers for the local-backend suites.

Kernels get their own working directory, ``TMPDIR`` and environment (no
cluster, no registry unless a test starts one); notebooks run through
nbclient; interactive cells (interrupts) through jupyter_client's
KernelManager. Also: a Debian ``docker-registry`` on a free port with a
umoci-made base image, a PEP 503 package index with a wheel written here, and
a ``/proc`` scan for processes carrying a marker.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from queue import Empty
from typing import Any, Callable

import nbformat
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from conftest import KERNEL_NAME, kernel_env

TIMEOUT = 120


_RUNTIME_DIRS: list[str] = []
atexit.register(lambda: [shutil.rmtree(d, ignore_errors=True) for d in _RUNTIME_DIRS])


def local_env(tmp: pathlib.Path, **extra: str) -> dict[str, str]:
    """A kernel environment with its own temporary directory (job
    directories land there) and a short runtime directory for the kernel's
    own sockets (socket paths are limited to 107 bytes)."""
    jobs_tmp = tmp / "tmp"
    jobs_tmp.mkdir(parents=True, exist_ok=True)
    runtime = tempfile.mkdtemp(prefix="crt-", dir="/tmp")
    _RUNTIME_DIRS.append(runtime)
    return kernel_env(tmp / "data", TMPDIR=str(jobs_tmp), XDG_RUNTIME_DIR=runtime, **extra)


def leftovers(env: dict[str, str]) -> list[str]:
    """Job directories left in the kernel's temporary directory."""
    return sorted(p.name for p in pathlib.Path(env["TMPDIR"]).glob("ciao-*"))


@dataclass
class Result:
    status: str
    stdout: str = ""
    stderr: str = ""
    error: dict[str, Any] | None = None
    displays: list[dict[str, Any]] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        """What the replicas printed (stdout)."""
        return self.stdout.splitlines()

    @property
    def status_lines(self) -> list[str]:
        """ciao's own `[ciao]` lines and other kernel-side text (stderr)."""
        return self.stderr.splitlines()

    def replica(self, name: str) -> list[str]:
        """The lines replica `name` printed, without their prefix."""
        prefix = f"[{name}] "
        return [line[len(prefix):] for line in self.lines if line.startswith(prefix)]

    def job_name(self) -> str:
        m = re.search(r"^\[ciao\] \S+ \(local\) (\S+) created: ", self.stderr, re.M)
        assert m, f"no job was created:\n{self.stdout}\n{self.stderr}\n{self.error}"
        return m.group(1)


class Kernel:
    """A ciao kernel started by a KernelManager in `cwd` with `env`."""

    def __init__(self, cwd: pathlib.Path, env: dict[str, str]) -> None:
        self.km = KernelManager(kernel_name=KERNEL_NAME)
        self.km.start_kernel(env=env, cwd=str(cwd))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=30)

    def execute(self, code: str, timeout: float = TIMEOUT, until: Callable[[Result], bool] | None = None) -> Result:
        """Runs `code`; when `until(result so far)` becomes true, interrupts the cell."""
        msg_id = self.kc.execute(code)
        result = Result(status="")
        interrupted = False
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"cell did not finish in {timeout}s:\n{result.stdout}\n{result.stderr}")
            try:
                msg = self.kc.get_iopub_msg(timeout=min(left, 0.2))
            except Empty:
                msg = None
            if msg is not None and msg["parent_header"].get("msg_id") == msg_id:
                kind, content = msg["msg_type"], msg["content"]
                if kind == "stream":
                    if content["name"] == "stdout":
                        result.stdout += content["text"]
                    else:
                        result.stderr += content["text"]
                elif kind == "error":
                    result.error = content
                elif kind in ("display_data", "update_display_data", "execute_result"):
                    result.displays.append(content)
                elif kind == "status" and content["execution_state"] == "idle":
                    break
            if until is not None and not interrupted and until(result):
                interrupted = True
                self.km.interrupt_kernel()
        while True:
            reply = self.kc.get_shell_msg(timeout=30)
            if reply["parent_header"].get("msg_id") == msg_id:
                result.status = reply["content"]["status"]
                return result

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def run_notebook(cells: list[str], cwd: pathlib.Path, env: dict[str, str], timeout: int = TIMEOUT) -> list[Result]:
    """Executes `cells` as a notebook with nbclient; one Result per cell."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "ciao", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    return execute_notebook(nb, cwd, env, timeout)


def execute_notebook(nb: Any, cwd: pathlib.Path, env: dict[str, str], timeout: int = TIMEOUT) -> list[Result]:
    client = NotebookClient(
        nb, kernel_name=KERNEL_NAME, timeout=timeout, allow_errors=True, resources={"metadata": {"path": str(cwd)}}
    )
    client.execute(env=env)
    results = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        r = Result(status="ok")
        for out in cell.outputs:
            if out.output_type == "stream":
                if out.name == "stdout":
                    r.stdout += out.text
                else:
                    r.stderr += out.text
            elif out.output_type == "error":
                r.status = "error"
                r.error = {"ename": out.ename, "evalue": out.evalue, "traceback": out.traceback}
            else:
                r.displays.append(dict(out))
        results.append(r)
    return results


# ---------------------------------------------------------------- processes


def processes_with(marker: str) -> list[int]:
    """Live processes whose environment or command line holds `marker`."""
    needle = marker.encode()
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
            if stat[stat.rfind(")") + 2] == "Z":
                continue
            blob = (entry / "environ").read_bytes() + (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in blob:
            found.append(int(entry.name))
    return found


def wait_gone(marker: str, within: float = 2.0) -> list[int]:
    """Processes with `marker` still there after `within` seconds (none expected)."""
    deadline = time.monotonic() + within
    while True:
        left = processes_with(marker)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer at {url}")


# ---------------------------------------------------------------- package index


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def write_wheel(dest: pathlib.Path, name: str, version: str, module_source: str) -> pathlib.Path:
    """A pure-Python wheel holding one module named after the package."""
    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    files = {
        f"{module}.py": module_source.encode(),
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: ciao-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{p},{_record_hash(d)},{len(d)}\n" for p, d in files.items()) + f"{dist_info}/RECORD,,\n"
    files[f"{dist_info}/RECORD"] = record.encode()
    path = dest / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for p, d in files.items():
            z.writestr(p, d)
    return path


class PackageIndex:
    """A PEP 503 simple index served by ``python3 -m http.server``."""

    def __init__(self, root: pathlib.Path, wheels: list[pathlib.Path], log: pathlib.Path) -> None:
        for wheel in wheels:
            project = wheel.name.split("-")[0].replace("_", "-").lower()
            (root / "simple" / project).mkdir(parents=True, exist_ok=True)
            (root / "files").mkdir(exist_ok=True)
            shutil.copy(wheel, root / "files" / wheel.name)
            digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
            (root / "simple" / project / "index.html").write_text(
                f'<!DOCTYPE html><html><body><a href="../../files/{wheel.name}#sha256={digest}">{wheel.name}</a></body></html>\n'
            )
        port = free_port()
        self._log = open(log, "w")
        self.proc = subprocess.Popen(
            ["python3", "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{port}/simple/"
        wait_http(self.url, self.proc, "the package index")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        self._log.close()


# ---------------------------------------------------------------- registry and base image


class Registry:
    """Debian's docker-registry (plain HTTP) on a free loopback port."""

    def __init__(self, tmp: pathlib.Path) -> None:
        if shutil.which("docker-registry") is None:
            raise RuntimeError("docker-registry is missing: tests/run-all installs it (apt-get install docker-registry)")
        port = free_port()
        self.host = f"127.0.0.1:{port}"
        config = tmp / "registry.yml"
        config.write_text(
            "version: 0.1\nlog: {level: info}\n"
            f"storage:\n  filesystem: {{rootdirectory: {tmp / 'registry-data'}}}\n  delete: {{enabled: true}}\n"
            f"http: {{addr: {self.host}}}\nhealth: {{storagedriver: {{enabled: false}}}}\n"
        )
        self.log_path = tmp / "registry.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=self._log, stderr=subprocess.STDOUT)
        wait_http(f"http://{self.host}/v2/", self.proc, "docker-registry")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        self._log.close()


def run(cmd: list[str]) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p.stdout


def push_base(tmp: pathlib.Path, dest: str, files: dict[str, str]) -> None:
    """A one-layer base made with umoci (unpack, add files, repack --refresh-bundle) pushed with skopeo."""
    for tool in ("umoci", "skopeo"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is missing: tests/run-all installs it")
    layout = tmp / "base-layout"
    bundle = tmp / "base-bundle"
    run(["umoci", "init", "--layout", str(layout)])
    run(["umoci", "new", "--image", f"{layout}:base"])
    run(["umoci", "unpack", "--rootless", "--image", f"{layout}:base", str(bundle)])
    for path, text in files.items():
        p = bundle / "rootfs" / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    run(["umoci", "repack", "--refresh-bundle", "--image", f"{layout}:base", str(bundle)])
    run(["umoci", "config", "--image", f"{layout}:base", "--config.env", "PATH=/usr/local/bin:/usr/bin:/bin"])
    run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:base", f"docker://{dest}"])


def manifest_of(reference: str) -> dict[str, Any]:
    """The manifest of `reference` (`HOST/REPO:TAG@sha256:…` is read by digest)."""
    if "@" in reference:
        name, digest = reference.split("@", 1)
        reference = f"{name.rsplit(':', 1)[0] if ':' in name.split('/')[-1] else name}@{digest}"
    return json.loads(run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{reference}"]))

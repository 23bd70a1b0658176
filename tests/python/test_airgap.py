"""Air-gapped end to end: a network namespace with only ``lo`` up (no route
out, no DNS) holds a real registry, the Kubernetes API stand-in, a ciao
kernel and an nbclient notebook (airgap_inside.py). The framework's public
base image (docker.io/tensorflow/tensorflow, docker.io/pytorch/pytorch) is
reached through the ``mirrors`` map of ciao's config; the cells build,
push, submit a TFJob and a PyTorchJob and stream their prefixed lines. The
kernel runs under ``strace -f -e trace=connect``: it may connect to nothing
but the configured registry, the configured API server and its own
connection-file ports. Needs root (``ip netns``), as CI has."""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import uuid

import pytest

import canary
from cluster import FAKE_CLUSTER_BIN
from conftest import CIAO_BIN

HERE = pathlib.Path(__file__).resolve().parent

# connect(5, {sa_family=AF_INET, sin_port=htons(41231), sin_addr=inet_addr("127.0.0.1")}, 16) = 0
INET = re.compile(r'sa_family=AF_INET, sin_port=htons\((\d+)\), sin_addr=inet_addr\("([\d.]+)"\)')
INET6 = re.compile(r'sa_family=AF_INET6, sin6_port=htons\((\d+)\).*?inet_pton\(AF_INET6, "([^"]+)"')
UNIX = re.compile(r'sa_family=AF_UNIX, sun_path=(@?"[^"]*")')


def ip(*args: str) -> str:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    assert r.returncode == 0, f"ip {' '.join(args)}: {r.stderr} (the air-gap test needs root and iproute2)"
    return r.stdout


@pytest.fixture
def netns():
    assert os.geteuid() == 0, "the air-gap test creates a network namespace: run it as root (CI does)"
    name = f"ciao-airgap-{uuid.uuid4().hex[:8]}"
    ip("netns", "add", name)
    try:
        ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name
    finally:
        # Whatever still runs in the namespace (nothing, normally) is ended before it goes.
        for pid in subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", name], check=False)
        assert name not in ip("netns", "list")


def connects(trace: str) -> list[tuple[str, str]]:
    """Every address the traced process tree asked to connect to: (family, address)."""
    found = []
    for line in trace.splitlines():
        if "connect(" not in line:
            continue
        if m := INET.search(line):
            found.append(("inet", f"{m.group(2)}:{m.group(1)}"))
        elif m := INET6.search(line):
            found.append(("inet6", f"[{m.group(2)}]:{m.group(1)}"))
        elif m := UNIX.search(line):
            found.append(("unix", m.group(1)))
        else:
            found.append(("other", line.strip()))
    return found


def test_behind_an_air_gap_jobs_run_through_the_mirror_and_the_kernel_connects_only_where_configured(netns, tmp_path) -> None:
    # The namespace is really cut off: only lo, no route, no way out.
    links = ip("netns", "exec", netns, "ip", "-o", "link")
    assert [l.split(":")[1].strip() for l in links.splitlines()] == ["lo"], links
    assert ip("netns", "exec", netns, "ip", "route").strip() == ""
    probe = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c",
         "import socket\ntry:\n socket.create_connection(('1.1.1.1', 443), timeout=3)\nexcept OSError as e:\n print(e.errno)\nelse:\n print('connected')"],
        capture_output=True, text=True, timeout=30)
    assert probe.stdout.strip() not in ("", "connected"), probe

    env = dict(os.environ, CIAO_BIN=str(CIAO_BIN), FAKE_CLUSTER_BIN=str(FAKE_CLUSTER_BIN))
    if canary.CAPTURE is not None:
        env["CIAO_CANARY_CAPTURE"] = str(canary.CAPTURE)
    output = tmp_path / "inside.log"
    with open(output, "w") as f:
        inside = subprocess.run(["ip", "netns", "exec", netns, sys.executable, str(HERE / "airgap_inside.py"), str(tmp_path)],
                                env=env, stdout=f, stderr=subprocess.STDOUT, timeout=600)
    assert inside.returncode == 0, output.read_text()[-20000:]
    result = json.loads((tmp_path / "result.json").read_text())

    # Both cells ran: exact prefixed lines, no error output.
    tf, pt = result["cells"]
    for cell in (tf, pt):
        assert not [o for o in cell["outputs"] if o["output_type"] == "error"], cell["outputs"]

    def lines(cell) -> list[str]:
        text = "".join(o["text"] for o in cell["outputs"] if o["output_type"] == "stream" and o["name"] == "stdout")
        return sorted(l.rsplit("\r", 1)[-1] for l in text.split("\n")[:-1])

    assert lines(tf) == ["[worker-0] air-gapped worker 0", "[worker-1] air-gapped worker 1"]
    assert lines(pt) == ["[master-0] rank 0", "[worker-0] rank 1"]
    assert len(result["jobs"]["tfjobs.kubeflow.org"]) == 1 and len(result["jobs"]["pytorchjobs.kubeflow.org"]) == 1
    stderr = "".join(o["text"] for c in (tf, pt) for o in c["outputs"] if o["output_type"] == "stream" and o["name"] == "stderr")
    for needle in (f"[ciao] image {result['registry']}/ml-team/tensorflow:", f"[ciao] image {result['registry']}/ml-team/pytorch:",
                   "TFJob default/", "PyTorchJob default/"):
        assert needle in stderr, (needle, stderr)
    assert stderr.count(" Succeeded after ") == 2, stderr
    # The cells asked for the public bases (docker.io/…, the descriptors' defaults); with no
    # route out, only the mirror could answer, and each push display ends as "pushed".
    pushes = [o["data"]["text/plain"] for c in (tf, pt) for o in c["outputs"]
              if o["output_type"] == "display_data" and o["data"]["text/plain"].startswith("image ")]
    assert len(pushes) == 2, pushes
    assert pushes[0].startswith(f"image pushed {result['registry']}/ml-team/tensorflow:"), pushes
    assert pushes[1].startswith(f"image pushed {result['registry']}/ml-team/pytorch:"), pushes

    # Where the kernel connected: the registry, the API server, its own ports; nothing else.
    trace = (tmp_path / "connect.trace").read_text()
    seen = connects(trace)
    registry = ("inet", result["registry"])
    api = ("inet", result["api"].removeprefix("http://"))
    # The kernel's public ports are plain listeners relaying each client connection to its
    # ZeroMQ socket on a Unix socket in a private directory (src/kernel/guard.rs): those
    # relays are the kernel's only other connects, all into one `ciao-<uuid>` directory.
    private = {pathlib.Path(a.strip('"')).parent for family, a in seen if family == "unix"}
    assert len(private) == 1, private
    (private_dir,) = private
    assert private_dir.parent == pathlib.Path(result["tmp"]) and re.fullmatch(r"ciao-[0-9a-f]{32}", private_dir.name), private_dir
    own = {("unix", f'"{private_dir / channel}"') for channel in ("shell", "iopub", "stdin", "control", "heartbeat")}
    own |= {("inet", f"{result['kernel_ip']}:{p}") for p in result["kernel_ports"]}
    allowed = {registry, api} | own
    print("kernel connects:", sorted(set(seen)))
    assert registry in seen and api in seen, seen
    assert set(seen) <= allowed, f"unexpected connects: {sorted(set(seen) - allowed)}\n{trace}"
    # The kernel logged at trace level, without a secret.
    log = pathlib.Path(result["kernel_log"]).read_text(errors="replace")
    assert "TRACE" in log
    assert canary.leaks(log) == [] and canary.leaks(json.dumps(result["cells"])) == []

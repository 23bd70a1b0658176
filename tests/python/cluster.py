"""The Kubernetes side of the end-to-end tests: a real docker-registry, test
base images made with umoci + skopeo, and the Kubernetes API stand-in
(the ``fake-cluster`` binary: a stand-in for tests and demos, not a
Kubernetes API server; its simulated Kubeflow operators run each replica as
a local process with the host's Python).

One :class:`Stack` serves a whole pytest session (``stack()``); it is
stopped at exit. Every location is a temporary directory and every port a
free loopback port, so parallel sessions never meet.
"""

from __future__ import annotations

import atexit
import json
import os
import pathlib
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from queue import Empty
from typing import Any, Iterator

import canary

REPO = pathlib.Path(__file__).resolve().parents[2]
FAKE_CLUSTER_BIN = pathlib.Path(os.environ.get("FAKE_CLUSTER_BIN", REPO / "target" / "debug" / "fake-cluster")).resolve()
SHARED = pathlib.Path(os.environ.get("CIAO_SHARED_DIR", REPO.parent / "shared"))
CRDS = SHARED / "spec" / "kubeflow"

# The framework images the tests use, pushed under the mirror prefix.
BASE_IMAGES = [
    "library/python:3.11-slim",
    "tensorflow/tensorflow:2.16.1",
    "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require(tool: str, package: str) -> None:
    if shutil.which(tool) is None:
        raise RuntimeError(f"{tool} is not installed; install the Debian package {package} (tests/run-all does)")


def run(*argv: str) -> str:
    r = subprocess.run(list(argv), capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{r.stdout}\n{r.stderr}")
    return r.stdout


class Registry:
    """``docker-registry serve`` over plain HTTP on a free loopback port;
    with ``users`` (name, password), htpasswd basic auth."""

    def __init__(self, root: pathlib.Path, users: list[tuple[str, str]] | None = None) -> None:
        require("docker-registry", "docker-registry")
        root.mkdir(parents=True, exist_ok=True)
        auth = ""
        if users:
            require("htpasswd", "apache2-utils")
            htpasswd = root / "htpasswd"
            htpasswd.write_text("".join(run("htpasswd", "-Bbn", u, p).strip() + "\n" for u, p in users))
            auth = f"auth:\n  htpasswd:\n    realm: ciao-test\n    path: {htpasswd}\n"
        for _ in range(5):
            port = free_port()
            config = root / f"registry-{port}.yml"
            config.write_text(
                "version: 0.1\nlog: {level: error}\n"
                f"storage:\n  filesystem: {{rootdirectory: {root / 'data'}}}\n  delete: {{enabled: true}}\n"
                f"http: {{addr: 127.0.0.1:{port}}}\nhealth: {{storagedriver: {{enabled: false}}}}\n{auth}"
            )
            self.log = open(root / f"registry-{port}.log", "w")
            self.proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=self.log, stderr=subprocess.STDOUT)
            self.host = f"127.0.0.1:{port}"
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1)
                    return
                except urllib.error.HTTPError as e:
                    if e.code == 401:  # up, asking for credentials
                        return
                    time.sleep(0.05)
                except OSError:
                    time.sleep(0.05)
            self.stop()
        raise RuntimeError("docker-registry did not start")

    def mirror_bases(self, work: pathlib.Path, prefix: str, creds: str | None = None) -> None:
        """Pushes a small base image (made under ``work``) as every one of
        BASE_IMAGES under ``HOST/prefix/``, as a mirror of the public names;
        ``creds`` (``user:password``) for a registry with htpasswd auth."""
        require("skopeo", "skopeo")
        layout = make_base(work)
        login = ["--dest-creds", creds] if creds else []
        for image in BASE_IMAGES:
            run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", *login, f"oci:{layout}:base", f"docker://{self.host}/{prefix}/{image}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def make_base(root: pathlib.Path) -> pathlib.Path:
    """A small OCI image layout (tag ``base``) made with umoci: one layer with
    a marker file, a PATH, no command (ciao sets it)."""
    require("umoci", "umoci")
    root.mkdir(parents=True, exist_ok=True)
    layout = root / "layout"
    bundle = root / "bundle"
    image = f"{layout}:base"
    run("umoci", "init", "--layout", str(layout))
    run("umoci", "new", "--image", image)
    run("umoci", "unpack", "--rootless", "--image", image, str(bundle))
    marker = bundle / "rootfs" / "etc" / "ciao-base-release"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("ciao python test base\n")
    # Never `umoci insert` (it writes truncated layers): unpack, change, repack.
    run("umoci", "repack", "--refresh-bundle", "--image", image, str(bundle))
    run("umoci", "config", "--image", image, "--config.env", "PATH=/usr/local/bin:/usr/bin:/bin")
    return layout


class FakeCluster:
    """The ``fake-cluster`` binary, with the Kubeflow CRDs."""

    def __init__(self, root: pathlib.Path, registry: str, *extra: str) -> None:
        if not FAKE_CLUSTER_BIN.is_file():
            raise RuntimeError(f"fake-cluster not found at {FAKE_CLUSTER_BIN}: run `cargo build --workspace --bins` or set FAKE_CLUSTER_BIN")
        root.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = root / "kubeconfig"
        self.ssl: ssl.SSLContext | None = None
        self.log = open(root / "fake-cluster.log", "w")
        argv = [
            str(FAKE_CLUSTER_BIN), "--port", "0", "--kubeconfig-out", str(self.kubeconfig),
            "--crd-dir", str(CRDS / "training-operator-v1.9.0"), "--crd-dir", str(CRDS / "trainer-v2"),
            "--insecure-registry", registry, "--work-dir", str(root / "work"), *extra,
        ]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log, text=True)
        first = self.proc.stdout.readline().strip()
        second = self.proc.stdout.readline().strip()
        if not first.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"fake-cluster did not start: {first!r} {second!r}; see {root / 'fake-cluster.log'}")
        self.url = first.removeprefix("listening on ")

    def trust(self, ca: pathlib.Path) -> None:
        """Trusts the stand-in's CA (``ca.crt`` of ``--serviceaccount-dir``) for its ``https`` URL."""
        self.ssl = ssl.create_default_context(cafile=str(ca))

    def api(self, path: str, method: str = "GET", body: Any = None, token: str | None = None) -> Any:
        """A Kubernetes API request with a bearer token (the canary kube token unless given)."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token or canary.get('kube-token')}"}
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=10, context=self.ssl) as r:
            return json.loads(r.read().decode() or "null")

    def admin(self, path: str, method: str = "GET", body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + "/_fake/" + path, data=data, method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10, context=self.ssl) as r:
            text = r.read().decode()
        return json.loads(text) if text else None

    def objects(self, resource: str, namespace: str = "default") -> list[dict[str, Any]]:
        """Objects of ``plural.group`` (``pods``, ``tfjobs.kubeflow.org``) in ``namespace``."""
        answer = self.admin(f"objects?resource={resource}")
        items = answer.get(resource, []) if isinstance(answer, dict) else []
        return [o for o in items if o.get("metadata", {}).get("namespace") == namespace]

    def names(self, resource: str, namespace: str = "default") -> list[str]:
        return sorted(o["metadata"]["name"] for o in self.objects(resource, namespace))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Stack:
    """Registry + base images + stand-in + a ciao config for kernels."""

    def __init__(self) -> None:
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="ciao-kube-"))
        self.registry = Registry(self.root / "registry")
        self.registry.mirror_bases(self.root / "base", "mirror")
        # The stand-in checks a bearer token (a canary: see tests/canaries), which the kubeconfig carries.
        self.cluster = FakeCluster(self.root / "cluster", self.registry.host, "--token", canary.get("kube-token"))
        self.config = self.root / "ciao.yaml"
        self.config.write_text(f"mirrors:\n  docker.io: {self.registry.host}/mirror\n")

    def kernel_env(self) -> dict[str, str]:
        """Settings a kernel needs to run jobs on the stand-in."""
        return {
            "CIAO_BACKEND": "kubernetes",
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "CIAO_REGISTRY": f"{self.registry.host}/test",
            "CIAO_INSECURE_REGISTRIES": self.registry.host,
            "CIAO_CONFIG": str(self.config),
        }

    def stop(self) -> None:
        self.cluster.stop()
        self.registry.stop()
        shutil.rmtree(self.root, ignore_errors=True)


_STACK: Stack | None = None


def stack() -> Stack:
    """The session's stack, started on first use."""
    global _STACK
    if _STACK is None:
        _STACK = Stack()
        atexit.register(_STACK.stop)
    return _STACK


def wait_for(what: str, check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# ---------------------------------------------------------------- a cell through jupyter_client


class Run:
    """A cell's reply and iopub messages."""

    def __init__(self, reply: dict[str, Any], messages: list[dict[str, Any]]) -> None:
        self.reply = reply
        self.messages = messages

    @property
    def status(self) -> str:
        return self.reply["content"]["status"]

    def stream(self, name: str) -> str:
        return "".join(m["content"]["text"] for m in self.messages if m["msg_type"] == "stream" and m["content"]["name"] == name)

    def lines(self) -> list[str]:
        """stdout as a terminal shows it."""
        return [line.rsplit("\r", 1)[-1] for line in self.stream("stdout").split("\n")[:-1]]

    def job(self) -> str:
        m = re.search(r"\[ciao\] \S+ [^/\s]+/(\S+) created: ", self.stream("stderr"))
        assert m, self.stream("stderr")
        return m.group(1)

    def of(self, msg_type: str) -> list[dict[str, Any]]:
        return [m["content"] for m in self.messages if m["msg_type"] == msg_type]


def collect(kc, msg_id: str, timeout: float = 90, on_message=None) -> Run:
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            msg = kc.get_iopub_msg(timeout=max(0.05, deadline - time.monotonic()))
        except Empty:
            raise AssertionError(f"no idle for {msg_id}; saw {[m['msg_type'] for m in messages]}")
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status":
            if msg["content"]["execution_state"] == "idle":
                break
            continue
        messages.append(msg)
        if on_message:
            on_message(msg)
    while True:
        reply = kc.get_shell_msg(timeout=timeout)
        if reply["parent_header"].get("msg_id") == msg_id:
            return Run(reply, messages)


@contextmanager
def environment(settings: dict[str, str]) -> Iterator[None]:
    """`settings` in os.environ while the block runs (client libraries read it), then as before."""
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

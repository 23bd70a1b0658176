"""The inside of the air-gapped end-to-end test (test_airgap.py runs this
with ``ip netns exec`` in a network namespace that has only ``lo``).

Starts a registry with htpasswd auth holding the framework base images under
a mirror prefix, the Kubernetes API stand-in, and a ciao kernel under
``strace -f -e trace=connect`` driven by nbclient through a notebook. The ciao
config is the air-gapped one (examples/air-gapped/config.yaml): ``docker.io``
mapped to the mirror, a robot user with a ``passwordFile``, a pull secret.
Writes ``result.json`` (the notebook's outputs, the addresses the kernel was
given, its connection ports) and ``connect.trace`` into OUT_DIR.

Usage: python3 airgap_inside.py OUT_DIR
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import shutil
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import canary  # noqa: E402
from cluster import FakeCluster, Registry  # noqa: E402

CIAO_BIN = pathlib.Path(os.environ["CIAO_BIN"]).resolve()
USER = "ciao-robot"
MIRROR = "dockerhub"

CELLS = [
    # A TFJob on the framework's public base image, docker.io/tensorflow/tensorflow, read through the mirror.
    "%framework=tensorflow\n%worker=2\n%cleanPolicy=all\nimport json, os\n"
    "task = json.loads(os.environ['TF_CONFIG'])['task']\n"
    "print('air-gapped', task['type'], task['index'], flush=True)\n"
    "if task['index'] == 0:\n    import time; time.sleep(1.5)\n",
    # A second cell: the base is known, only the cell's layer is new.
    "%framework=pytorch\n%master=1\n%worker=1\nimport os\nprint('rank', os.environ['RANK'], flush=True)\n"
    "if os.environ['RANK'] == '0':\n    import time; time.sleep(1.5)\n",
]


def main(out: pathlib.Path) -> None:
    canary.install()
    root = pathlib.Path(tempfile.mkdtemp(prefix="ciao-airgap-"))
    registry = cluster = None
    try:
        password = canary.get("registry-password-file")
        registry = Registry(root / "registry", users=[(USER, password)])
        registry.mirror_bases(root / "base", MIRROR, creds=f"{USER}:{password}")
        cluster = FakeCluster(root / "cluster", registry.host, "--token", canary.get("kube-token"))
        dockerconfigjson = json.dumps({"auths": {registry.host: {"auth": base64.b64encode(f"{USER}:{password}".encode()).decode()}}})
        cluster.api("/api/v1/namespaces/default/secrets", "POST", {
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": "corp-registry"},
            "data": {".dockerconfigjson": base64.b64encode(dockerconfigjson.encode()).decode()}})

        password_file = root / "secrets" / "password"
        password_file.parent.mkdir()
        password_file.write_text(password + "\n")
        config = root / "config.yaml"
        config.write_text(
            f"registry: {registry.host}/ml-team\n"
            f"mirrors:\n  docker.io: {registry.host}/{MIRROR}\n"
            f"registries:\n  \"{registry.host}\":\n    insecure: true\n    username: {USER}\n"
            f"    passwordFile: {password_file}\n    pullSecret: corp-registry\n"
            "platform: linux/amd64\n")

        # A kernelspec that runs the kernel under strace.
        trace = out / "connect.trace"
        spec = root / "jupyter" / "kernels" / "ciao-airgap"
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": ["strace", "-f", "-qq", "-e", "trace=connect", "-e", "signal=none", "-o", str(trace),
                     str(CIAO_BIN), "kernel", "--connection-file", "{connection_file}"],
            "display_name": "ciao (traced)", "language": "python", "interrupt_mode": "message"}))
        for d in ("home", "runtime", "data"):
            (root / d).mkdir()
        for var in list(os.environ):
            if var.startswith(("CIAO_", "KUBE", "JUPYTER_", "DOCKER_")) or var.endswith(("_PROXY", "_proxy")):
                del os.environ[var]
        os.environ.update({
            "HOME": str(root / "home"), "CIAO_HOME": str(root / "home" / ".ciao"),
            "JUPYTER_PATH": str(root / "jupyter"), "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
            "JUPYTER_DATA_DIR": str(root / "data"), "JUPYTER_PLATFORM_DIRS": "0",
            "CIAO_CONFIG": str(config), "KUBECONFIG": str(cluster.kubeconfig), "CIAO_BACKEND": "kubernetes",
            "CIAO_LOG": "trace",
        })

        import nbformat
        from jupyter_client.manager import KernelManager
        from nbclient import NotebookClient

        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
        km = KernelManager(kernel_name="ciao-airgap")
        client = NotebookClient(nb, km=km, timeout=180, kernel_name="ciao-airgap", allow_errors=True)
        log = canary.kernel_stderr_file(dict(os.environ)) or out / "kernel-trace.log"
        with open(log, "ab") as stderr:
            client.execute(stderr=stderr)
        result = {
            "registry": registry.host,
            "api": cluster.url,
            "kernel_ip": km.ip,
            "kernel_ports": [km.shell_port, km.iopub_port, km.stdin_port, km.control_port, km.hb_port],
            "kernel_log": str(log),
            "tmp": tempfile.gettempdir(),
            "cells": [{"outputs": c.get("outputs", [])} for c in nb.cells],
            "jobs": {kind: cluster.names(kind) for kind in ("tfjobs.kubeflow.org", "pytorchjobs.kubeflow.org")},
        }
        (out / "result.json").write_text(json.dumps(result, indent=1, default=str))
    finally:
        if cluster is not None:
            cluster.stop()
        if registry is not None:
            registry.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]).resolve())

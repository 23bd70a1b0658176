"""Real Jupyter front ends for the tests: a JupyterLab server on a free
loopback port (token, temporary settings and workspaces, the ciao
kernelspec from conftest's temporary prefix) and notebooks made through its
contents API or with nbformat."""

from __future__ import annotations

import json
import pathlib
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import nbformat

from cluster import free_port
from conftest import KERNEL_NAME

KERNELSPEC = {"name": KERNEL_NAME, "display_name": "ciao", "language": "python"}

# Worker 0 ending ends a TFJob: it lets the others print first.
TFJOB_CELL = (
    "%framework=tensorflow\n%ps=1\n%worker=2\n%cleanPolicy=all\n"
    "import json, os\n"
    "task = json.loads(os.environ['TF_CONFIG'])['task']\n"
    "print('task', task['type'], task['index'], flush=True)\n"
    "if task == {'type': 'worker', 'index': 0}:\n"
    "    import time; time.sleep(1.5)"
)
TFJOB_LINES = ["[ps-0] task ps 0", "[worker-0] task worker 0", "[worker-1] task worker 1"]

LONG_CELL = "%framework=tensorflow\n%worker=1\nimport time\nprint('started', flush=True)\ntime.sleep(300)"


def notebook(*sources: str) -> nbformat.NotebookNode:
    """A notebook of code cells that runs on the ciao kernel."""
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": KERNELSPEC, "language_info": {"name": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    return nb


class Lab:
    """``jupyter lab`` on 127.0.0.1 with a token; kernels it starts get ``env``."""

    def __init__(self, root: pathlib.Path, env: dict[str, str]) -> None:
        self.root = root
        self.notebooks = root / "notebooks"
        self.notebooks.mkdir(parents=True)
        settings = root / "lab-settings"
        # A fresh settings dir asks about news on first start: say no.
        notification = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        notification.parent.mkdir(parents=True)
        notification.write_text(json.dumps({"fetchNews": "false"}))
        env = dict(env, JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(root / "lab-workspaces"))
        self.token = secrets.token_hex(16)
        for attempt in range(5):
            self.log = open(root / f"lab-{attempt}.log", "w")
            port = free_port()
            self.url = f"http://127.0.0.1:{port}"
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
                    f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
                    f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.notebooks}",
                ],
                env=env, stdout=self.log, stderr=subprocess.STDOUT,
            )
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    self.api("GET", "status")
                    return
                except (OSError, urllib.error.URLError):
                    time.sleep(0.1)
            self.stop()
        raise RuntimeError(f"jupyter lab did not start; see {root}/lab-*.log")

    def api(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.url}/api/{path}", data=data, method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read().decode()
        return json.loads(text) if text else None

    def put_notebook(self, name: str, nb: nbformat.NotebookNode) -> None:
        self.api("PUT", f"contents/{name}", {"type": "notebook", "format": "json", "content": json.loads(nbformat.writes(nb))})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

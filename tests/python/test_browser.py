"""JupyterLab end to end in headless Chromium: a real Lab server with the
ciao kernelspec, driven by Playwright (tests/browser/lab.mjs, npm
``playwright-core`` on Debian's ``chromium``). The kernel runs jobs on the
Kubernetes API stand-in and pushes to a real registry (cluster.py).

Asserted from the page's DOM: the live job table reached Succeeded with
every replica's phase, the push display reached "pushed", the prefixed log
lines (coloured: ``logColors`` is on) are in the output area, Tab after
``%frame`` offers ``%framework=``, Shift-Tab shows the magic's
documentation, and the interrupt button stops a running job. Screenshots go
to ``target/screenshots/lab/`` (README, "Rich output")."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import time

import pytest

from cluster import REPO, stack, wait_for
from conftest import kernel_env
from frontends import LONG_CELL, TFJOB_CELL, TFJOB_LINES, Lab, notebook

BROWSER_DIR = REPO / "tests" / "browser"
SCREENSHOTS = REPO / "target" / "screenshots" / "lab"
CHROMIUM = "/usr/bin/chromium"


def require_browser() -> None:
    if not pathlib.Path(CHROMIUM).is_file():
        raise RuntimeError("chromium is not installed; install the Debian package chromium (tests/run-all does)")
    if shutil.which("node") is None:
        raise RuntimeError("node is not installed; install the Debian packages nodejs and npm (tests/run-all does)")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        raise RuntimeError("playwright-core is not installed: run `npm ci` in tests/browser (tests/run-all does)")


@pytest.fixture(scope="module")
def kube():
    return stack()


def test_jupyterlab_runs_a_tfjob_completes_magics_and_interrupts_a_job(kube, tmp_path) -> None:
    require_browser()
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    env = kernel_env(tmp_path / "data", **kube.kernel_env(), CIAO_LOG_COLORS="1")
    lab = Lab(tmp_path / "lab", env)
    try:
        lab.put_notebook("ciao.ipynb", notebook(TFJOB_CELL, LONG_CELL, ""))
        settings = tmp_path / "lab.json"
        settings.write_text(json.dumps({
            "url": lab.url, "token": lab.token, "notebook": "ciao.ipynb", "screenshots": str(SCREENSHOTS),
            "userDataDir": str(tmp_path / "chromium-profile"), "chromium": CHROMIUM, "timeoutMs": 90_000,
        }))
        started = time.monotonic()
        run = subprocess.run(["node", str(BROWSER_DIR / "lab.mjs"), str(settings)], capture_output=True, text=True, timeout=600)
        elapsed = time.monotonic() - started
        assert run.returncode == 0, run.stderr
        seen = json.loads(run.stdout.strip().splitlines()[-1])
        assert seen["ok"], f"{seen.get('error')}\n{run.stderr}\nscreenshots: {SCREENSHOTS}"
        print(f"browser session: {elapsed:.1f} s; steps: {[s['name'] for s in seen['steps']]}")

        # The kernel named in the metadata is the one Lab started.
        assert seen["kernelName"] == "ciao (Kubeflow)"
        # One push display, updated in place to its totals.
        assert seen["pushDisplays"] == 1 and seen["pushState"] == "pushed", seen["push"]
        assert "tensorflow:ciao-" in seen["push"] and "uploaded" in seen["push"], seen["push"]
        # One live table, updated in place to the job's final condition.
        assert seen["jobTables"] == 1
        assert seen["tableStates"][-1] == "Succeeded" and "Succeeded" in seen["table"], seen["table"]
        phases = dict(seen["replicaPhases"])
        assert phases.keys() == {"ps-0", "worker-0", "worker-1"}, phases
        assert phases["worker-0"] == phases["worker-1"] == "Succeeded", phases
        # The parameter server never has to end: the operator may delete it.
        assert phases["ps-0"] in ("Succeeded", "Deleted"), phases
        for header in ("replica", "phase", "restarts", "elapsed"):
            assert header in seen["table"], seen["table"]
        # The replicas' lines under their prefixes, each prefix coloured.
        lines = seen["outputText"].splitlines()
        for line in TFJOB_LINES:
            assert line in lines, seen["outputText"]
        coloured = {text: cls for cls, text in seen["colouredPrefixes"]}
        assert set(coloured) == {"[ps-0]", "[worker-0]", "[worker-1]"}, seen["colouredPrefixes"]
        assert len(set(coloured.values())) == 3, "each replica has its own colour"

        assert "%framework=" in seen["completions"], seen["completions"]
        assert seen["tooltip"].startswith("%framework=NAME") and "tensorflow TensorFlow distributed training (TFJob)" in seen["tooltip"], seen["tooltip"]

        # The interrupt stopped the job: the cell ends with the kernel's
        # KeyboardInterrupt and the table says the job was deleted.
        assert seen["interruptedTableState"] == "Deleted", seen["interruptedText"]
        assert seen["interruptedPhases"] == [["worker-0", "Deleted"]], seen["interruptedText"]
        assert "KeyboardInterrupt" in seen["interruptedText"], seen["interruptedText"]
        assert seen["interruptMs"] < 30_000
        wait_for("the interrupted job to be gone", lambda: not kube.cluster.admin("state")["processes"])
        for name in ("tfjob-succeeded", "completion", "inspection", "interrupted"):
            assert (SCREENSHOTS / f"{name}.png").stat().st_size > 10_000
    finally:
        lab.stop()

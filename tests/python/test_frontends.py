"""The same job cells in the other Jupyter front ends: ``jupyter console``
driven through a pty (pexpect), and ``jupyter nbconvert --execute --to
html``. Jobs run on the Kubernetes API stand-in and push to a real registry
(cluster.py)."""

from __future__ import annotations

import html
from html.parser import HTMLParser
import re
import subprocess
import sys
import time

import nbformat
import pexpect
import pytest

from cluster import stack
from conftest import KERNEL_NAME, kernel_env
from frontends import TFJOB_CELL, TFJOB_LINES, notebook

TIMEOUT = 120


@pytest.fixture(scope="module")
def kube():
    return stack()


def test_jupyter_console_shows_a_jobs_output_and_an_error(kube, tmp_path) -> None:
    env = kernel_env(tmp_path / "data", **kube.kernel_env())
    console = pexpect.spawn(
        sys.executable,
        ["-m", "jupyter_console", "--kernel", KERNEL_NAME, "--ZMQTerminalInteractiveShell.simple_prompt=True"],
        env=env, encoding="utf-8", timeout=TIMEOUT, dimensions=(50, 250), cwd=str(tmp_path),
    )
    try:
        console.expect(r"In \[1\]: ")
        # jupyter console waits for the kernel on the shell channel only; its
        # iopub subscription may still be on its way (ZeroMQ's slow joiner),
        # and a cell whose idle status it misses never returns. A person
        # never types that fast; give the subscription time to land.
        time.sleep(2)
        # A cell the kernel rejects: the error names the problem and the fix.
        console.sendline("%framework=nope")
        console.expect(r"In \[2\]: ")
        assert re.search(r'unknown framework "nope"; .*valid frameworks: ', console.before), console.before

        console.sendline("print('hello from the console')")
        console.expect(r"In \[3\]: ")
        ran = console.before
        # The replica's line under its prefix, and the job's final [ciao] line.
        assert re.search(r"^\[main-0\] hello from the console\r?$", ran, re.M), ran
        assert re.search(r"\[ciao\] Job default/python-\S+ Succeeded after ", ran), ran
        # The displays print their text/plain (a console draws no updates).
        assert re.search(r"^image \S+ ", ran, re.M) and re.search(r"^Job default/python-\S+ · ", ran, re.M), ran

        # A job that fails: the error and the replica's last lines.
        console.sendline("raise ValueError('broken on purpose')")
        console.expect(r"In \[4\]: ")
        failed = console.before
        assert re.search(r"^JobFailed: Job default/python-\S+ failed", failed, re.M), failed
        assert re.search(r"^\[main-0\] ValueError: broken on purpose\r?$", failed, re.M), failed
        # Ctrl-D ends the console and, with it, the kernel it started.
        console.sendeof()
        console.expect(r"Do you really want to exit \(\[y\]/n\)\? ")
        console.sendline("y")
        console.expect(pexpect.EOF)
    finally:
        console.close(force=True)


def replica_rows(page: str) -> list[tuple[str, str]]:
    """(replica, phase) of every table row, whatever the attribute order."""
    rows: list[tuple[str, str]] = []

    class Rows(HTMLParser):
        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "tr" and "data-replica" in a:
                rows.append((a["data-replica"], a["data-phase"]))

    Rows().feed(page)
    return rows


def test_nbconvert_html_of_an_executed_notebook_has_the_final_table_and_the_log_lines(kube, tmp_path) -> None:
    path = tmp_path / "tfjob.ipynb"
    nbformat.write(notebook(TFJOB_CELL), path)
    env = kernel_env(tmp_path / "data", **kube.kernel_env(), CIAO_LOG_COLORS="1")
    done = subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", "--execute", f"--ExecutePreprocessor.timeout={TIMEOUT}",
         "--output-dir", str(tmp_path / "html"), str(path)],
        env=env, capture_output=True, text=True, timeout=TIMEOUT * 2,
    )
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "html" / "tfjob.html").read_text()
    # The table as it last looked: one table, Succeeded, every replica Succeeded.
    assert page.count('class="ciao-job"') == 1
    assert '<div class="ciao-job" data-state="Succeeded">' in page
    rows = dict(replica_rows(page))
    assert rows.keys() == {"ps-0", "worker-0", "worker-1"}, rows
    assert rows["worker-0"] == rows["worker-1"] == "Succeeded", rows
    # The parameter server never has to end: the operator may delete it.
    assert rows["ps-0"] in ("Succeeded", "Deleted"), rows
    assert '<div class="ciao-push" data-state="pushed">' in page
    # The replicas' lines under their prefixes; the ANSI colours became spans.
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    for line in TFJOB_LINES:
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line
    coloured = re.findall(r'<span class="ansi-([a-z]+)-fg">\[([a-z]+-\d)\]</span>', page)
    assert sorted(name for _, name in coloured) == ["ps-0", "worker-0", "worker-1"], coloured
    assert len({colour for colour, _ in coloured}) == 3

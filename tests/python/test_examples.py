"""The examples in examples/ run as documented, on the local backend: every
cell file through the kernel, the tour notebook through nbclient, and the
README quickstart through `ciao run`."""

from __future__ import annotations

import pathlib
import subprocess

import nbformat
import pytest

import canary
from conftest import CIAO_BIN, REPO
from local_support import Result, execute_notebook, leftovers, local_env, run_notebook

EXAMPLES = REPO / "examples"

TF_LINES = {
    "ps-0": {"TF_CONFIG task ps:0 of cluster ['ps', 'worker']", "received 332833500 from worker 0", "received 2331833500 from worker 1"},
    "worker-0": [
        "TF_CONFIG task worker:0 of cluster ['ps', 'worker']",
        "worker 0 computed 332833500 on its shard",
        "worker 0 sees the total 2664667000 from 2 workers",
    ],
    "worker-1": [
        "TF_CONFIG task worker:1 of cluster ['ps', 'worker']",
        "worker 1 computed 2331833500 on its shard",
        "worker 1 sees the total 2664667000 from 2 workers",
    ],
}


def check_tensorflow(r: Result) -> None:
    assert set(r.replica("ps-0")) == TF_LINES["ps-0"]
    assert r.replica("worker-0") == TF_LINES["worker-0"]
    assert r.replica("worker-1") == TF_LINES["worker-1"]


def check_pytorch(r: Result) -> None:
    assert r.replica("worker-0")[-1] == "rank 1: all-reduce sum = 60"
    assert r.replica("worker-1")[-1] == "rank 2: all-reduce sum = 60"
    master = r.replica("master-0")
    assert master[-1] == "rank 0: all-reduce sum = 60"
    assert sorted(master[1:3]) == ["rank 1 joined with 20", "rank 2 joined with 30"]


def check_mpi(r: Result) -> None:
    assert r.replica("worker-0") == ["rank 0 of 3 summed 333 numbers: 55278"]
    assert r.replica("worker-1") == ["rank 1 of 3 summed 333 numbers: 166167"]
    assert r.replica("worker-2") == ["rank 2 of 3 summed 334 numbers: 278055"]


def check_xgboost(r: Result) -> None:
    assert r.replica("master-0") == ["tracker: all 2 workers checked in: ranks [1, 2]"]
    assert r.replica("worker-1") == ["worker rank 2 of 3 checked in with the tracker"]


def check_paddle(r: Result) -> None:
    assert r.replica("worker-0") == [f"rendezvous of job {r.job_name()}: 2 nodes"]
    assert r.replica("worker-1")[0].startswith("joined the rendezvous at localhost:")


def check_jax(r: Result) -> None:
    assert r.replica("worker-0")[-1] == "coordinator: every process connected"
    assert r.replica("worker-1")[0].startswith("process 1 of 2, coordinator localhost:")


def check_python(r: Result) -> None:
    assert r.replica("main-0")[0].startswith(f"hello from {r.job_name()}-main-0 (Python 3.")


def check_trainjob(r: Result) -> None:
    assert r.replica("node-0") == ["node 0: all 2 nodes are up"]
    assert r.replica("node-1")[0].startswith("node 1 of 2 reached the master at localhost:")


EXPECTED = {
    "tensorflow_ps_worker.py": check_tensorflow,
    "pytorch_ddp_style.py": check_pytorch,
    "mpi_ranks.py": check_mpi,
    "xgboost_tracker.py": check_xgboost,
    "paddle_collective.py": check_paddle,
    "jax_processes.py": check_jax,
    "python_job.py": check_python,
    "trainjob_nodes.py": check_trainjob,
}


def test_every_example_cell_file_runs_locally(tmp_path: pathlib.Path) -> None:
    files = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert files == sorted(EXPECTED), "every example cell file has its check"
    env = local_env(tmp_path)
    results = run_notebook([(EXAMPLES / f).read_text() for f in files], EXAMPLES, env)
    for f, r in zip(files, results):
        assert r.status == "ok", (f, r.stdout, r.error)
        assert " Succeeded after " in r.status_lines[-1], (f, r.stderr)
        EXPECTED[f](r)
    assert leftovers(env) == []


def test_the_tour_notebook_runs_top_to_bottom_without_a_cluster(tmp_path: pathlib.Path) -> None:
    nb = nbformat.read(EXAMPLES / "ciao-tour.ipynb", as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "ciao"
    results = execute_notebook(nb, EXAMPLES, local_env(tmp_path))
    for r in results:
        assert r.status == "ok", (r.stdout, r.error)
    dryrun, module, modules, files, tf, pytorch, jobs = results
    assert "ciao dry run: nothing was built or submitted" in dryrun.displays[0]["data"]["text/plain"]
    assert "shards.py" in modules.displays[0]["data"]["text/plain"]
    assert files.replica("main-0") == ["100 numbers, the first shard of 4 holds 25"]
    assert tf.replica("worker-1")[0].startswith("I am worker 1; the cluster is {'ps': ['localhost:")
    for rank, name in enumerate(["master-0", "worker-0", "worker-1"]):
        mine = sum(range(1, 101)[rank::3])
        assert pytorch.replica(name) == [f"rank {rank}: my shard sums to {mine}, all ranks to 5050"]
    table = jobs.displays[0]["data"]["text/plain"]
    assert tf.job_name() in table and pytorch.job_name() in table


def test_the_quickstart_runs_with_no_cluster_and_no_registry(tmp_path: pathlib.Path) -> None:
    env = local_env(tmp_path)
    p = subprocess.run(
        [str(CIAO_BIN), "run", "examples/tensorflow_ps_worker.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    canary.capture("py-cli", f"--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}")
    assert p.returncode == 0, (p.stdout, p.stderr)
    r = Result(status="ok", stdout=p.stdout, stderr=p.stderr)
    check_tensorflow(r)
    # Replica lines are the job's output (stdout); ciao's own status lines go to stderr.
    assert f"[ciao] TFJob (local) {r.job_name()} created: 3 replicas expected" in r.status_lines
    assert not any(line.startswith("[ciao]") for line in r.lines)
    assert leftovers(env) == []


def in_cluster_config_text() -> str:
    """The config.yaml inside examples/in-cluster/ciao-config.yaml (a ConfigMap)."""
    lines = (EXAMPLES / "in-cluster" / "ciao-config.yaml").read_text().splitlines()
    start = lines.index("  config.yaml: |") + 1
    return "\n".join(line[4:] for line in lines[start:]) + "\n"


@pytest.mark.parametrize("which", ["air-gapped", "in-cluster"])
def test_the_example_configurations_are_valid_ciao_configs(tmp_path: pathlib.Path, which: str) -> None:
    if which == "air-gapped":
        config = EXAMPLES / "air-gapped" / "config.yaml"
        expected = {"target": "registry.corp.internal:5000/ml-team/tensorflow:<content digest>", "backend": "local"}
    else:
        config = tmp_path / "config.yaml"
        config.write_text(in_cluster_config_text())
        expected = {
            "target": "registry.registry-system.svc.cluster.local:5000/team-a/tensorflow:<content digest>",
            "backend": "kubernetes",
            "namespace": "team-a",
        }
    env = local_env(tmp_path, CIAO_CONFIG=str(config))
    [r] = run_notebook(["%framework=tensorflow\n%worker=2\n%dryrun\n"], tmp_path, env)
    assert r.status == "ok", r.error
    text = r.displays[0]["data"]["text/plain"]
    rows = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in text.splitlines()[1:] if line.startswith("  ") and not line.startswith("    ") and len(line.split(None, 1)) == 2}
    for key, value in expected.items():
        assert rows[key] == value, text

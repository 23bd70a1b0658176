"""Jobs end to end through the real kernel: jupyter_client and nbclient
drive ``ciao kernel``, which builds images into a real registry and runs
jobs on the Kubernetes API stand-in (``fake-cluster``: a stand-in for
tests, not a Kubernetes API server; see cluster.py). Asserted: the exact
prefixed lines on iopub, the reply statuses, the objects in the stand-in
(its admin API ``/_fake/objects``), and that nothing is left behind beyond
what the clean policy keeps."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from jupyter_client.manager import start_new_kernel

from cluster import Run, collect, environment, stack, wait_for
from conftest import KERNEL_NAME, kernel_env

TIMEOUT = 90


@pytest.fixture(scope="module")
def kube():
    return stack()


@pytest.fixture(scope="module")
def kernel(kube, tmp_path_factory):
    env = kernel_env(tmp_path_factory.mktemp("data"), **kube.kernel_env())
    km, kc = start_new_kernel(kernel_name=KERNEL_NAME, env=env, startup_timeout=60)
    yield km, kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def execute(kernel, code: str) -> Run:
    _, kc = kernel
    return collect(kc, kc.execute(code))


def test_a_tfjob_prints_each_replicas_task_under_its_prefix(kernel, kube) -> None:
    r = execute(kernel, "%framework=tensorflow\n%ps=1\n%worker=2\n%cleanPolicy=all\nimport json, os\n"
                        "task = json.loads(os.environ['TF_CONFIG'])['task']\nprint('task', task['type'], task['index'], flush=True)\n"
                        # worker 0 ending ends the job: it lets the others finish first
                        "if task == {'type': 'worker', 'index': 0}:\n    import time; time.sleep(1.5)\n")
    assert r.status == "ok", r.reply
    assert sorted(r.lines()) == ["[ps-0] task ps 0", "[worker-0] task worker 0", "[worker-1] task worker 1"]
    name = r.job()
    job = next(j for j in kube.cluster.objects("tfjobs.kubeflow.org") if j["metadata"]["name"] == name)
    assert job["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "ciao"
    assert set(job["spec"]["tfReplicaSpecs"]) == {"PS", "Worker"}
    assert any(c["type"] == "Succeeded" and c["status"] == "True" for c in job["status"]["conditions"])
    push, table = r.of("display_data")
    assert re.match(r"image resolving on \S*tensorflow/tensorflow:2\.16\.1 · ", push["data"]["text/plain"]), push
    assert table["data"]["text/plain"].startswith(f"TFJob default/{name} · ")
    # Each display is updated in place under its own id: the push reaches
    # "pushed" with its totals, the table the job's final condition.
    updates = {u["transient"]["display_id"]: u["data"]["text/plain"] for u in r.of("update_display_data")}
    assert re.fullmatch(r"image pushed \S+/tensorflow:ciao-\S+ · \S+ \S+ sent · blobs: \d+ skipped, \d+ mounted, \d+ uploaded · \S+",
                        updates[push["transient"]["display_id"]]), updates
    assert r.of("update_display_data")[-1]["data"]["text/plain"].startswith(f"TFJob default/{name} · Succeeded · ")
    # cleanPolicy=all: the job stays, its pods go.
    wait_for("the pods to be cleaned up", lambda: not [p for p in kube.cluster.names("pods") if p.startswith(name)])


def test_a_pytorchjob_prints_rank_and_world_size(kernel) -> None:
    r = execute(kernel, "%framework=pytorch\n%master=1\n%worker=2\nimport os\n"
                        "print('rank', os.environ['RANK'], 'world', os.environ['WORLD_SIZE'], flush=True)\n"
                        "if os.environ['RANK'] == '0':\n    import time; time.sleep(1.5)\n")
    assert r.status == "ok", r.reply
    assert sorted(r.lines()) == ["[master-0] rank 0 world 3", "[worker-0] rank 1 world 3", "[worker-1] rank 2 world 3"]


def test_an_exception_in_worker_1_fails_the_cell_with_its_last_lines(kernel, kube) -> None:
    r = execute(kernel, "%framework=tensorflow\n%worker=2\n%cleanPolicy=all\nimport json, os, time\n"
                        "task = json.loads(os.environ['TF_CONFIG'])['task']\nprint('starting', task['index'], flush=True)\n"
                        "if task['index'] == 1:\n    raise ValueError('worker one is broken')\ntime.sleep(2)\n")
    assert r.status == "error"
    name = r.job()
    content = r.reply["content"]
    assert content["ename"] == "JobFailed"
    assert content["evalue"].startswith(f"TFJob default/{name} failed (worker-1 failed): TFJobFailed")
    (error,) = r.of("error")
    assert error["traceback"][0] == f"JobFailed: {content['evalue']}"
    assert error["traceback"][1] == "[worker-1] starting 1"
    assert error["traceback"][-1] == "[worker-1] ValueError: worker one is broken"
    assert "[worker-1] ValueError: worker one is broken" in r.lines()
    job = next(j for j in kube.cluster.objects("tfjobs.kubeflow.org") if j["metadata"]["name"] == name)
    assert any(c["type"] == "Failed" and c["status"] == "True" for c in job["status"]["conditions"])
    wait_for("the failed job's pods to be cleaned up", lambda: not [p for p in kube.cluster.names("pods") if p.startswith(name)])


def test_a_configmap_cell_and_the_job_commands(kernel, kube) -> None:
    r = execute(kernel, "%provider=configmap\nprint('code from a ConfigMap')\n")
    assert r.status == "ok", r.reply
    assert r.lines() == ["[main-0] code from a ConfigMap"]
    assert "[ciao] image" not in r.stream("stderr")
    name = r.job()
    (cm,) = [c for c in kube.cluster.objects("configmaps") if c["metadata"]["name"] == name]
    (job,) = [j for j in kube.cluster.objects("jobs.batch") if j["metadata"]["name"] == name]
    assert cm["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    assert cm["data"]["main.py"].endswith("print('code from a ConfigMap')\n")

    jobs = execute(kernel, "%jobs")
    assert jobs.status == "ok"
    (result,) = jobs.of("execute_result")
    rows = {line.split()[0]: line.split() for line in result["data"]["text/plain"].splitlines()[1:]}
    assert rows[name][1:3] == ["Job", "Succeeded"]
    assert f"<td>{name}</td>" in result["data"]["text/html"]

    logs = execute(kernel, f"%logs {name}")
    assert logs.status == "ok"
    assert logs.lines() == ["[main-0] code from a ConfigMap"]

    gone = execute(kernel, f"%delete {name}")
    assert gone.status == "ok"
    assert re.fullmatch(rf"deleted Job default/{name} and its 1 pod \({name}-\w+\) and ConfigMap {name}\n", gone.stream("stdout")), gone.stream("stdout")
    wait_for("the job, its pod and its ConfigMap to go", lambda: name not in kube.cluster.names("jobs.batch")
             and name not in kube.cluster.names("configmaps") and not [p for p in kube.cluster.names("pods") if p.startswith(name)])

    missing = execute(kernel, f"%logs {name}")
    assert missing.status == "error"
    assert missing.reply["content"]["ename"] == "JobNotFound"


def test_an_interrupt_mid_stream_deletes_the_job(kernel, kube) -> None:
    km, kc = kernel
    msg_id = kc.execute("import time\nprint('started', flush=True)\nfor i in range(600):\n    print('tick', i, flush=True)\n    time.sleep(0.1)\n")
    interrupted: list[float] = []

    def watch(msg: dict[str, Any]) -> None:
        if not interrupted and msg["msg_type"] == "stream" and "[main-0] started" in msg["content"]["text"]:
            interrupted.append(time.monotonic())
            km.interrupt_kernel()

    r = collect(kc, msg_id, on_message=watch)
    assert interrupted, "the job never started"
    assert r.status == "error"
    assert r.reply["content"]["ename"] == "KeyboardInterrupt"
    name = r.job()
    assert r.reply["content"]["evalue"] == f"interrupted: Job default/{name} and its replicas were deleted"
    lines = r.lines()
    assert lines[0] == "[main-0] started"
    assert lines[1:] == [f"[main-0] tick {i}" for i in range(len(lines) - 1)], "no line lost or doubled"
    wait_for("nothing left of the job", lambda: name not in kube.cluster.names("jobs.batch")
             and not [p for p in kube.cluster.names("pods") if p.startswith(name)]
             and not kube.cluster.admin("state")["processes"])


def test_a_notebook_runs_jobs_with_nbclient(kube, tmp_path) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": KERNEL_NAME, "display_name": "ciao", "language": "python"}})
    nb.cells = [
        nbformat.v4.new_code_cell("%framework=pytorch\n%master=1\n%worker=1\nimport os, time\nprint('rank', os.environ['RANK'], flush=True)\n"
                                  "if os.environ['RANK'] == '0':\n    time.sleep(1.5)"),
        nbformat.v4.new_code_cell("%jobs"),
    ]
    with environment({**kube.kernel_env(), "JUPYTER_DATA_DIR": str(tmp_path / "data")}):
        NotebookClient(nb, timeout=TIMEOUT, kernel_name=KERNEL_NAME).execute()
    first = nb.cells[0].outputs
    stdout = "".join(o["text"] for o in first if o["output_type"] == "stream" and o["name"] == "stdout")
    assert sorted(stdout.splitlines()) == ["[master-0] rank 0", "[worker-0] rank 1"]
    stderr = "".join(o["text"] for o in first if o["output_type"] == "stream" and o["name"] == "stderr")
    name = re.search(r"\[ciao\] PyTorchJob default/(\S+) created", stderr).group(1)
    # The live table was updated in place: nbclient keeps its last state.
    push, table = [o for o in first if o["output_type"] == "display_data"]
    assert push["data"]["text/plain"].startswith("image pushed "), push
    assert table["data"]["text/plain"].startswith(f"PyTorchJob default/{name} · Succeeded · ")
    (result,) = [o for o in nb.cells[1].outputs if o["output_type"] == "execute_result"]
    assert name in result["data"]["text/plain"]

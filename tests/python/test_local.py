"""The local backend through the real kernel: no cluster and no registry
configured, so cells build into the OCI layout (on an empty base, as the base
cannot be fetched) and run as local processes with the environment the
training operator would give their pods."""

from __future__ import annotations

import json
import os
import pathlib
import uuid
from typing import Iterator

import pytest

from local_support import Kernel, Result, leftovers, local_env, processes_with, run_notebook, wait_gone


@pytest.fixture
def env(tmp_path: pathlib.Path) -> dict[str, str]:
    return local_env(tmp_path)


@pytest.fixture
def kernel(tmp_path: pathlib.Path, env: dict[str, str]) -> Iterator[Kernel]:
    k = Kernel(tmp_path, env)
    yield k
    k.close()


TF_CELL = """\
%framework=tensorflow
%ps=1
%worker=2
import json, os, socket, time
config = json.loads(os.environ["TF_CONFIG"])
print("task", json.dumps(config["task"], sort_keys=True))
print("cluster", json.dumps(config["cluster"], sort_keys=True))
print("environment", config["environment"])
host, port = config["cluster"]["ps"][0].rsplit(":", 1)
if config["task"]["type"] == "ps":
    server = socket.create_server(("", int(port)))
    time.sleep(600)  # parameter servers serve until the job is done
for _ in range(400):  # workers finish once they reached the parameter server
    try:
        socket.create_connection((host, int(port))).close()
        break
    except OSError:
        time.sleep(0.025)
"""


def test_a_tensorflow_ps_worker_job_prints_each_replicas_tf_config_task(tmp_path: pathlib.Path, env: dict[str, str]) -> None:
    [r] = run_notebook([TF_CELL], tmp_path, env)
    assert r.status == "ok", (r.stdout, r.error)
    name = r.job_name()
    assert f"[ciao] TFJob (local) {name} created: 3 replicas expected" in r.status_lines
    assert r.replica("worker-0")[0] == 'task {"index": 0, "type": "worker"}'
    assert r.replica("worker-1")[0] == 'task {"index": 1, "type": "worker"}'
    assert r.replica("ps-0")[0] == 'task {"index": 0, "type": "ps"}'
    clusters = {json.dumps(json.loads(r.replica(n)[1][len("cluster ") :])) for n in ("ps-0", "worker-0", "worker-1")}
    assert len(clusters) == 1, "every replica sees the same cluster"
    cluster = json.loads(clusters.pop())
    assert sorted(cluster) == ["ps", "worker"]
    addresses = cluster["ps"] + cluster["worker"]
    assert all(a.startswith("localhost:") for a in addresses) and len(set(addresses)) == 3, addresses
    for n in ("ps-0", "worker-0", "worker-1"):
        assert r.replica(n)[2] == "environment cloud"
    # The parameter server was stopped when the workers were done, and the job succeeded.
    assert "[ciao] worker-0 Succeeded: Completed" in r.status_lines
    assert any(line.startswith("[ciao] ps-0 Deleted: Stopped") for line in r.status_lines), r.stderr
    assert not any(line.startswith("[ciao]") for line in r.lines), r.stdout
    assert r.status_lines[-1].startswith(f"[ciao] TFJob (local) {name} Succeeded after ")
    assert "building on an empty base" in r.stderr, "no registry: the image is built on an empty base"
    assert leftovers(env) == [], "the job's directory is removed"


PYTORCH_CELL = """\
%framework=pytorch
%master=1
%worker=2
import os, socket, time
rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
assert os.environ["PET_MASTER_ADDR"] == addr and os.environ["PET_MASTER_PORT"] == str(port)
if rank == 0:
    server = socket.create_server((addr, port))
    ranks = []
    peers = []
    while len(peers) < world - 1:
        conn, _ = server.accept()
        ranks.append(int(conn.makefile().readline()))
        peers.append(conn)
    total = sum(ranks)
    for conn in peers:
        conn.sendall(f"{total}\\n".encode())
    print(f"master saw ranks {sorted(ranks)} of world {world}")
else:
    for _ in range(400):
        try:
            conn = socket.create_connection((addr, port))
            break
        except OSError:
            time.sleep(0.025)
    conn.sendall(f"{rank}\\n".encode())
    print(f"rank {rank} got sum {conn.makefile().readline().strip()}")
"""


def test_a_pytorch_style_job_meets_at_the_injected_master_address(tmp_path: pathlib.Path, env: dict[str, str]) -> None:
    [r] = run_notebook([PYTORCH_CELL], tmp_path, env)
    assert r.status == "ok", (r.stdout, r.error)
    assert r.replica("master-0") == ["master saw ranks [1, 2] of world 3"]
    assert r.replica("worker-0") == ["rank 1 got sum 3"]
    assert r.replica("worker-1") == ["rank 2 got sum 3"]


def test_files_and_modules_reach_the_job_next_to_its_code(tmp_path: pathlib.Path, env: dict[str, str]) -> None:
    (tmp_path / "data.csv").write_text("x,y\n1,2\n")
    (tmp_path / "conf" / "deep").mkdir(parents=True)
    (tmp_path / "conf" / "deep" / "settings.ini").write_text("[job]\nepochs = 3\n")
    (tmp_path / "link.csv").symlink_to(tmp_path / "data.csv")
    module = "%module=helpers\ndef double(x):\n    return 2 * x\n"
    job = (
        "%files=data.csv,conf,link.csv\n"
        "import helpers, os\n"
        "print(helpers.double(21))\n"
        "print(open('data.csv').read().splitlines())\n"
        "print(open('conf/deep/settings.ini').read().splitlines())\n"
        "print(open('link.csv').read() == open('data.csv').read(), os.path.islink('link.csv'))\n"
    )
    results = run_notebook([module, job, "%modules"], tmp_path, env)
    assert results[0].status == "ok" and "module helpers.py kept" in results[0].stdout
    r = results[1]
    assert r.status == "ok", (r.stdout, r.stderr, r.error)
    assert r.replica("main-0") == ["42", "['x,y', '1,2']", "['[job]', 'epochs = 3']", "True False"]
    assert "helpers.py" in results[2].displays[0]["data"]["text/plain"]


@pytest.mark.parametrize(
    ("spec", "setup", "ename", "words"),
    [
        ("missing.csv", None, "FilesError", ["missing.csv", "no such file or directory"]),
        ("../outside.txt", None, "MagicError", ["'..'"]),
        ("/etc/hostname", None, "MagicError", ["absolute path"]),
        ("leak.txt", "symlink-out", "FilesError", ["leak.txt", "resolves to", "working directory"]),
        ("data", "symlink-in-dir", "FilesError", ["is a symlink to", "working directory"]),
    ],
)
def test_bad_files_paths_are_refused_with_the_path_and_the_reason(
    tmp_path: pathlib.Path, env: dict[str, str], spec: str, setup: str | None, ename: str, words: list[str]
) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_text("secret\n")
    wd = tmp_path / "wd"
    (wd / "data").mkdir(parents=True)
    if setup == "symlink-out":
        (wd / "leak.txt").symlink_to(outside)
    if setup == "symlink-in-dir":
        (wd / "data" / "escape").symlink_to(outside)
    [r] = run_notebook([f"%files={spec}\nprint('never runs')\n"], wd, env)
    assert r.status == "error" and r.error["ename"] == ename, r.error
    for w in words:
        assert w in r.error["evalue"], r.error["evalue"]
    assert "never runs" not in r.stdout and "created" not in r.stderr


def test_a_failing_replica_fails_the_cell_with_its_last_lines(tmp_path: pathlib.Path, env: dict[str, str]) -> None:
    cell = (
        "%framework=tensorflow\n%worker=2\n"
        "import json, os, time\n"
        "task = json.loads(os.environ['TF_CONFIG'])['task']\n"
        "print('starting', task['index'])\n"
        "if task['index'] == 1:\n"
        "    raise ValueError('boom on worker 1')\n"
        "time.sleep(600)\n"
    )
    [r] = run_notebook([cell], tmp_path, env)
    name = r.job_name()
    assert r.status == "error"
    assert r.error["ename"] == "JobFailed"
    assert r.error["evalue"] == f"TFJob (local) {name} failed (worker-1 failed): Error: exit code 1"
    tb = r.error["traceback"]
    assert "[worker-1] starting 1" in tb and "[worker-1] ValueError: boom on worker 1" in tb, tb
    assert not any(line.startswith("[worker-0]") for line in tb), "only the failing replica's lines"
    assert any(line.startswith("[ciao] worker-0 Deleted: Stopped") for line in r.status_lines), r.stderr
    assert leftovers(env) == []


INTERRUPT_CELL = """\
%framework=pytorch
%master=1
%worker=1
%env=LOCALTEST_MARK={marker}
import os, subprocess, time
# A child, and a grandchild through a shell, both in the replica's process group.
subprocess.Popen(["sleep", "300"])
subprocess.Popen(["/bin/sh", "-c", "sleep 301 & wait"])
print("ready", flush=True)
time.sleep(600)
"""


def test_an_interrupt_ends_every_replica_and_everything_they_started(kernel: Kernel, env: dict[str, str]) -> None:
    marker = uuid.uuid4().hex
    both_ready = lambda r: len(r.replica("master-0")) + len(r.replica("worker-0")) == 2  # noqa: E731
    r = kernel.execute(INTERRUPT_CELL.format(marker=marker), until=both_ready)
    assert r.replica("master-0") == ["ready"] and r.replica("worker-0") == ["ready"], r.stdout
    assert r.status == "error" and r.error["ename"] == "KeyboardInterrupt", r.error
    assert "were deleted" in r.error["evalue"]
    assert wait_gone(marker) == [], "no replica, child or grandchild outlives the interrupt"
    assert r.status_lines[-1].startswith(f"[ciao] PyTorchJob (local) {r.job_name()} Deleted after ")
    assert leftovers(env) == []
    # The kernel goes on.
    again = kernel.execute("print('next')")
    assert again.status == "ok" and again.replica("main-0") == ["next"]


DETACH_CELL = """\
%onInterrupt=detach
%env=LOCALTEST_MARK={marker}
import time
for i in range({ticks}):
    print("tick", i, flush=True)
    time.sleep(0.1)
print("done")
"""


def test_a_detached_job_keeps_running_and_jobs_logs_attach_delete_find_it(kernel: Kernel) -> None:
    marker = uuid.uuid4().hex
    r = kernel.execute(DETACH_CELL.format(marker=marker, ticks=30), until=lambda r: "tick 2" in r.replica("main-0"))
    name = r.job_name()
    assert r.status == "error" and r.error["ename"] == "KeyboardInterrupt"
    assert f"%attach {name}" in r.error["evalue"] and "detached" in r.error["evalue"]
    assert processes_with(marker), "the detached job still runs"

    jobs = kernel.execute("%jobs")
    table = jobs.displays[0]["data"]["text/plain"]
    row = next(line for line in table.splitlines() if line.startswith(name))
    assert "Job (local)" in row and "Running" in row, table

    logs = kernel.execute(f"%logs {name}")
    assert logs.status == "ok"
    assert logs.replica("main-0")[:3] == ["tick 0", "tick 1", "tick 2"], logs.stdout

    attached = kernel.execute(f"%attach {name}")
    assert attached.status == "ok", attached.error
    assert attached.replica("main-0") == [f"tick {i}" for i in range(30)] + ["done"]
    assert attached.status_lines[-1].startswith(f"[ciao] Job (local) {name} Succeeded after ")

    deleted = kernel.execute(f"%delete {name}")
    assert deleted.status == "ok" and f"Job (local) {name}: deleted it" in deleted.stderr
    assert name not in kernel.execute("%jobs").displays[0]["data"]["text/plain"]
    gone = kernel.execute(f"%logs {name}")
    assert gone.status == "error" and gone.error["ename"] == "NotFound" and "%jobs" in gone.error["evalue"]


def test_deleting_a_running_detached_job_stops_its_processes(kernel: Kernel) -> None:
    marker = uuid.uuid4().hex
    r = kernel.execute(DETACH_CELL.format(marker=marker, ticks=6000), until=lambda r: "tick 1" in r.replica("main-0"))
    name = r.job_name()
    assert processes_with(marker)
    deleted = kernel.execute(f"%delete {name}")
    assert deleted.status == "ok" and "stopped its replicas and deleted it" in deleted.stderr
    assert wait_gone(marker) == []


def test_secret_env_is_a_clear_error_locally(tmp_path: pathlib.Path, env: dict[str, str]) -> None:
    [r] = run_notebook(["%secretEnv=TOKEN=my-secret:token\nprint(1)\n"], tmp_path, env)
    assert r.status == "error" and r.error["ename"] == "MagicError"
    assert "Kubernetes Secrets" in r.error["evalue"] and "%env" in r.error["evalue"]
    assert "created" not in r.stderr


def test_env_precedence_is_image_then_cell_then_operator(tmp_path: pathlib.Path, env: dict[str, str]) -> None:
    cell = (
        "%framework=jax\n%worker=2\n%env=FROM_CELL=yes\n%env=PROCESS_ID=overridden\n%env=PYTHONUNBUFFERED=cell\n"
        "import os\n"
        "print(os.environ['FROM_CELL'], os.environ['PROCESS_ID'], os.environ['NUM_PROCESSES'], os.environ['PYTHONUNBUFFERED'])\n"
        "print(sorted(k for k in os.environ if k.startswith('CIAO_')))\n"
    )
    env = dict(env, CIAO_REGISTRY_PASSWORD="kernel-secret")
    [r] = run_notebook([cell], tmp_path, env)
    assert r.status == "ok", r.error
    # The operator's variables win over %env (they come last in the pod spec).
    assert r.replica("worker-1") == ["yes 1 2 1", "[]"]
    assert "kernel-secret" not in r.stdout + r.stderr


def test_the_configmap_provider_ships_files_too_and_refuses_more_than_a_configmap_holds(
    tmp_path: pathlib.Path, env: dict[str, str]
) -> None:
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "a b.txt").write_text("spaces survive\n")
    (tmp_path / "big.bin").write_bytes(os.urandom(1100 * 1024))
    ok, big = run_notebook(
        [
            "%provider=configmap\n%files=small\nprint(open('small/a b.txt').read().strip())\n",
            "%provider=configmap\n%files=big.bin\nprint('never runs')\n",
        ],
        tmp_path,
        env,
    )
    assert ok.status == "ok", (ok.stdout, ok.error)
    assert ok.replica("main-0") == ["spaces survive"]
    assert "[ciao] image" not in ok.stdout + ok.stderr, "no image is built for a ConfigMap"
    assert big.status == "error" and big.error["ename"] == "FilesError"
    assert "more than a ConfigMap holds (1048576 bytes)" in big.error["evalue"] and "%provider=image" in big.error["evalue"]


def test_local_jobs_do_not_outlive_their_kernel(tmp_path: pathlib.Path, env: dict[str, str]) -> None:
    k = Kernel(tmp_path, env)
    marker = uuid.uuid4().hex
    r = k.execute(DETACH_CELL.format(marker=marker, ticks=6000), until=lambda r: "tick 1" in r.replica("main-0"))
    assert r.error["ename"] == "KeyboardInterrupt" and processes_with(marker)
    k.kc.stop_channels()
    k.km.shutdown_kernel(now=False)
    assert wait_gone(marker) == [], "a kernel that shuts down takes its local jobs with it"

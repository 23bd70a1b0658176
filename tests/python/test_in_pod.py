"""The kernel as it runs in a Kubeflow notebook pod, through jupyter_client:
no kubeconfig, only ``KUBERNETES_SERVICE_HOST``/``_PORT`` and a mounted
service account (``token``, ``ca.crt``, ``namespace``; its directory given by
``CIAO_SERVICEACCOUNT_DIR``) against the API stand-in over TLS that checks
the bearer token; registry credentials from a mounted
``kubernetes.io/dockerconfigjson`` Secret (``CIAO_DOCKER_CONFIG``) for the
push to an htpasswd registry, and the same Secret in the cluster as the
jobs' ``imagePullSecrets``. The service-account token rotates while the
kernel runs (the stand-in then accepts only the new one) and the next cell
still succeeds. The kernel logs at trace level; no canary secret may appear
in any message or in its log."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import shutil
import tempfile
import time

import pytest
from jupyter_client.manager import start_new_kernel

import canary
from cluster import FakeCluster, Registry
from conftest import KERNEL_NAME, kernel_env
from cluster import collect

USER = "ciao-robot"
NAMESPACE = "team-a"


def replace(path: pathlib.Path, text: str) -> None:
    """Replaces a file the way kubelet rotates a projected token: a new file renamed over the old."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    os.rename(tmp, path)


@pytest.fixture(scope="module")
def pod():
    root = pathlib.Path(tempfile.mkdtemp(prefix="ciao-pod-"))
    password = canary.get("dockerconfigjson-password")
    registry = Registry(root / "registry", users=[(USER, password)])
    registry.mirror_bases(root / "base", "mirror", creds=f"{USER}:{password}")
    server_token = root / "accepted-token"
    server_token.write_text(canary.get("kube-token"))
    sa = root / "serviceaccount"
    cluster = FakeCluster(root / "cluster", registry.host, "--tls", "--token-file", str(server_token),
                          "--serviceaccount-dir", str(sa), "--namespace", NAMESPACE)
    assert cluster.url.startswith("https://127.0.0.1:")
    assert (sa / "token").read_text().strip() == canary.get("kube-token")
    cluster.trust(sa / "ca.crt")

    # The registry Secret, as `kubectl create secret docker-registry` makes it: in the
    # cluster for the jobs' pulls, and mounted into the notebook pod for ciao's push.
    dockerconfigjson = json.dumps({"auths": {registry.host: {
        "username": USER, "password": password,
        "auth": base64.b64encode(f"{USER}:{password}".encode()).decode()}}})
    cluster.api(f"/api/v1/namespaces/{NAMESPACE}/secrets", "POST", {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "regcred"},
        "data": {".dockerconfigjson": base64.b64encode(dockerconfigjson.encode()).decode()}})
    mounted = root / "regcred"
    mounted.mkdir()
    (mounted / ".dockerconfigjson").write_text(dockerconfigjson)

    config = root / "ciao.yaml"
    config.write_text(
        f"backend: kubernetes\nregistry: {registry.host}/jobs\n"
        f"registries:\n  \"{registry.host}\":\n    insecure: true\n    pullSecret: regcred\n"
        f"mirrors:\n  docker.io: {registry.host}/mirror\n")
    yield {"root": root, "registry": registry, "cluster": cluster, "sa": sa, "server_token": server_token,
           "config": config, "mounted": mounted}
    cluster.stop()
    registry.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def kernel(pod, tmp_path_factory):
    home = tmp_path_factory.mktemp("pod-home")
    env = kernel_env(tmp_path_factory.mktemp("data"))
    for var in ("KUBECONFIG", "DOCKER_CONFIG"):
        env.pop(var, None)
    env.update({
        "HOME": str(home),  # no ~/.kube/config, no ~/.docker/config.json
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": pod["cluster"].url.rsplit(":", 1)[1],
        "CIAO_SERVICEACCOUNT_DIR": str(pod["sa"]),
        "CIAO_DOCKER_CONFIG": str(pod["mounted"]),
        "CIAO_CONFIG": str(pod["config"]),
        "CIAO_LOG": "trace",
    })
    log = canary.kernel_stderr_file(env) or (tmp_path_factory.mktemp("log") / "kernel-trace.txt")
    with open(log, "ab") as stderr:
        km, kc = start_new_kernel(kernel_name=KERNEL_NAME, env=env, startup_timeout=60, stderr=stderr)
    yield km, kc, log
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def execute(kernel, code: str):
    _, kc, _ = kernel
    return collect(kc, kc.execute(code), timeout=120)


def assert_no_canary(r, log: pathlib.Path) -> None:
    seen = json.dumps([r.reply, *r.messages], default=str)
    assert canary.leaks(seen) == [], seen
    assert canary.leaks(log.read_text(errors="replace")) == []


def test_in_a_pod_the_service_account_and_a_mounted_registry_secret_run_jobs_across_a_token_rotation(kernel, pod) -> None:
    cluster, registry = pod["cluster"], pod["registry"]
    log = kernel[2]
    code = ("%framework=tensorflow\n%worker=2\n%cleanPolicy=all\nimport json, os\n"
            "task = json.loads(os.environ['TF_CONFIG'])['task']\nprint('{}', task['type'], task['index'], flush=True)\n"
            "if task['index'] == 0:\n    import time; time.sleep(1.5)\n")
    r = execute(kernel, code.format("before rotation"))

    assert r.status == "ok", (r.reply, r.stream("stderr"))
    assert sorted(r.lines()) == ["[worker-0] before rotation worker 0", "[worker-1] before rotation worker 1"]
    # The service account's namespace, the registry Secret as the pull secret, the image in the htpasswd registry.
    job = next(j for j in cluster.objects("tfjobs.kubeflow.org", NAMESPACE) if j["metadata"]["name"] == r.job())
    pod_spec = job["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]
    assert pod_spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod_spec["containers"][0]["image"].startswith(f"{registry.host}/jobs/")

    # kubelet rotates the projected token; the API server now accepts only the new one.
    replace(pod["server_token"], canary.get("kube-token-rotated"))
    replace(pod["sa"] / "token", canary.get("kube-token-rotated"))
    r2 = execute(kernel, code.format("after rotation"))
    assert r2.status == "ok", (r2.reply, r2.stream("stderr"))
    assert sorted(r2.lines()) == ["[worker-0] after rotation worker 0", "[worker-1] after rotation worker 1"]
    assert r2.job() != r.job()

    # The old token is refused by the stand-in (the rotation is real).
    import urllib.error
    with pytest.raises(urllib.error.HTTPError) as refused:
        cluster.api(f"/api/v1/namespaces/{NAMESPACE}/pods", token=canary.get("kube-token"))
    assert refused.value.code == 401

    # Trace-level log, and nothing secret in it or in any message.
    time.sleep(0.2)
    text = log.read_text(errors="replace")
    assert "TRACE" in text, text[-2000:]
    assert_no_canary(r, log)
    assert_no_canary(r2, log)


def test_a_wrong_registry_password_is_a_401_naming_its_source_without_the_password(kernel, pod) -> None:
    config, registry = pod["config"], pod["registry"]
    original = config.read_text()
    wrong = canary.get("wrong-password")
    # The ciao config's entry comes before the mounted Secret: its wrong password is the one tried.
    config.write_text(original.replace("    insecure: true\n", f"    insecure: true\n    username: {USER}\n    password: {wrong}\n", 1))
    try:
        r = execute(kernel, "%framework=tensorflow\n%worker=1\nprint('never runs')\n")
    finally:
        config.write_text(original)
    assert r.status == "error"
    error = r.reply["content"]
    assert error["ename"] == "RegistryError", error
    assert "401" in error["evalue"] and f'ciao config registries."{registry.host}"' in error["evalue"], error
    assert f"user {USER}" in error["evalue"], error
    assert_no_canary(r, kernel[2])
    # Back to the mounted Secret: the next cell pushes again.
    r = execute(kernel, "%framework=tensorflow\n%worker=1\nprint('pushed again', flush=True)\n")
    assert r.status == "ok", (r.reply, r.stream("stderr"))
    assert r.lines() == ["[worker-0] pushed again"]

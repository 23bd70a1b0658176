"""Local jobs with %packages (a virtual environment per job, from a package
index served here) and with a base image from a real registry (the code is
read back out of the pushed image)."""

from __future__ import annotations

import pathlib
import subprocess
from typing import Iterator

import pytest

from local_support import PackageIndex, Registry, leftovers, local_env, manifest_of, push_base, run_notebook, write_wheel

PACKAGE = "ciao-local-test-pkg"


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PackageIndex]:
    d = tmp_path_factory.mktemp("index")
    wheel = write_wheel(d, PACKAGE, "1.0", "VALUE = 'from the private index'\n")
    idx = PackageIndex(d / "root", [wheel], d / "http.log")
    yield idx
    idx.stop()


def host_has_package() -> bool:
    probe = subprocess.run(["python3", "-c", "import ciao_local_test_pkg"], capture_output=True)
    return probe.returncode == 0


def test_packages_install_into_a_job_venv_that_goes_with_the_job(tmp_path: pathlib.Path, index: PackageIndex) -> None:
    env = local_env(tmp_path)
    cell = (
        f"%packages={PACKAGE}\n%pipIndexUrl={index.url}\n%framework=tensorflow\n%worker=2\n"
        "import os, sys, ciao_local_test_pkg\n"
        "print(ciao_local_test_pkg.VALUE)\n"
        "print('in a venv:', sys.prefix != sys.base_prefix, os.environ['VIRTUAL_ENV'] == sys.prefix)\n"
        "import json\n"  # the host's packages stay visible (--system-site-packages)
    )
    [r] = run_notebook([cell], tmp_path, env, timeout=180)
    assert r.status == "ok", (r.stdout, r.error)
    assert f"[ciao] installing {PACKAGE} into a virtual environment of this job" in r.stderr
    assert any(line.startswith("[pip] Successfully installed ciao-local-test-pkg-1.0") for line in r.lines), r.stdout
    for w in ("worker-0", "worker-1"):
        assert r.replica(w) == ["from the private index", "in a venv: True True"]
    assert not host_has_package(), "the notebook's own environment is untouched"
    assert leftovers(env) == [], "the virtual environment is removed with the job"


def test_a_package_pip_cannot_install_fails_the_job_with_pips_words(tmp_path: pathlib.Path, index: PackageIndex) -> None:
    env = local_env(tmp_path)
    cell = f"%packages=ciao-no-such-package==9.9\n%pipIndexUrl={index.url}\nprint('never runs')\n"
    [r] = run_notebook([cell], tmp_path, env, timeout=180)
    name = r.job_name()
    assert r.status == "error" and r.error["ename"] == "JobFailed", r.error
    evalue = r.error["evalue"]
    assert evalue.startswith(f"Job (local) {name} failed: PackageInstallFailed: pip could not install ciao-no-such-package==9.9: ")
    assert "ERROR: " in evalue and "ciao-no-such-package" in evalue, evalue
    assert any(line.startswith("[pip] ERROR:") for line in r.error["traceback"]), r.error["traceback"]
    assert "never runs" not in r.stdout
    assert leftovers(env) == []


def test_a_base_from_a_registry_and_the_code_read_back_from_the_pushed_image(tmp_path: pathlib.Path) -> None:
    registry = Registry(tmp_path)
    try:
        base = f"{registry.host}/bases/tiny:1"
        push_base(tmp_path, base, {"/etc/ciao-test-base": "tiny base\n"})
        env = local_env(tmp_path, CIAO_REGISTRY=f"{registry.host}/team", CIAO_INSECURE_REGISTRIES=registry.host)
        (tmp_path / "numbers.txt").write_text("1 2 3\n")
        cell = f"%base={base}\n%files=numbers.txt\nprint(sum(map(int, open('numbers.txt').read().split())))\n"
        [r] = run_notebook([cell], tmp_path, env)
        assert r.status == "ok", (r.stdout, r.stderr, r.error)
        assert r.replica("main-0") == ["6"]
        image = next(line.split()[-1] for line in r.status_lines if line.startswith("[ciao] image "))
        assert image.startswith(f"{registry.host}/team/python:"), image
        assert "empty base" not in r.stderr
        layers = manifest_of(image)["layers"]
        assert len(layers) == 3, "base layer, %files layer, code layer"
        # The job's files came out of the registry: its ciao layers were fetched from it.
        log = registry.log()
        for layer in layers[1:]:
            assert f"GET /v2/team/python/blobs/{layer['digest']}" in log, layer["digest"]
        assert leftovers(env) == []
    finally:
        registry.stop()

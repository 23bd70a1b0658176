"""tests/scan-canaries: a capture holding a canary in any form fails the
run, a capture too thin to prove anything fails it, a clean one passes."""

from __future__ import annotations

import base64
import pathlib
import subprocess

import canary

SCAN = pathlib.Path(__file__).resolve().parents[1] / "scan-canaries"
CLEAN = "[ciao] TFJob default/x created: 2 replicas expected\n" * 100


def scan(root: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCAN), str(root)], capture_output=True, text=True)


def full_capture(root: pathlib.Path, extra: str = "") -> None:
    root.mkdir()
    for kind in ("py-messages-py-1", "kernel-trace-py-1-2", "rust-cli-x-3", "rust-engine-x-3"):
        (root / f"{kind}.txt").write_text(CLEAN)
    (root / "kernel-log-py-9.txt").write_text(extra)


def test_a_clean_full_capture_passes(tmp_path) -> None:
    full_capture(tmp_path / "c")
    r = scan(tmp_path / "c")
    assert r.returncode == 0, r.stderr
    assert "no canary found" in r.stdout


def test_a_canary_raw_or_in_base64_fails_naming_the_file(tmp_path) -> None:
    secret = canary.get("dockerconfigjson-password")
    for i, leak in enumerate([secret, base64.b64encode(f"ciao-robot:{secret}".encode()).decode(),
                              base64.b64encode(f"x:{secret}".encode()).decode()]):
        root = tmp_path / f"leak{i}"
        full_capture(root, f"DEBUG sending Authorization: Basic {leak}\n")
        r = scan(root)
        assert r.returncode == 1, r.stdout
        assert "SECRETS LEAKED" in r.stderr and "kernel-log-py-9.txt:1" in r.stderr and secret in r.stderr


def test_a_secret_issued_at_run_time_is_looked_for_too(tmp_path) -> None:
    root = tmp_path / "issued"
    full_capture(root, "bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln\n")
    (root / ".issued").mkdir()
    (root / ".issued" / "1.txt").write_text("eyJhbGciOiJSUzI1NiJ9.e30.c2ln\n")
    assert scan(root).returncode == 1


def test_a_thin_capture_fails(tmp_path) -> None:
    root = tmp_path / "thin"
    root.mkdir()
    (root / "py-messages-py-1.txt").write_text(CLEAN)
    r = scan(root)
    assert r.returncode == 1
    assert "too thin" in r.stderr and "trace level" in r.stderr

"""Canary secrets and the capture of everything the Python suites see.

Every credential the suites set is a value from ``tests/canaries`` (shared
with the Rust suites and ``tests/scan-canaries``). When
``CIAO_CANARY_CAPTURE`` names a directory (tests/run-all sets it), every
Jupyter message a client receives (iopub, shell and control replies) and the
stderr of every kernel started through jupyter_client is written there, so
the scanner can prove no canary ever reached them. :func:`install` sets
that up; conftest.py calls it before it clears the ``CIAO_*`` variables.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import threading
import time
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[2]
CANARY_FILE = REPO / "tests" / "canaries"


def _parse(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, value = line.split(None, 1)
            out[name] = value.strip()
    return out


CANARIES: dict[str, str] = _parse(CANARY_FILE.read_text())
CAPTURE: pathlib.Path | None = pathlib.Path(os.environ["CIAO_CANARY_CAPTURE"]) if os.environ.get("CIAO_CANARY_CAPTURE") else None
_lock = threading.Lock()


def get(name: str) -> str:
    """The value of canary ``name``."""
    return CANARIES[name]


def forms(secret: str) -> list[str]:
    """A secret as it may appear: raw, and the parts of its standard and
    URL-safe base64 encodings that do not depend on the bytes around it (at
    each of the three alignments), as in ``base64(user:password)``."""
    out = {secret}
    raw = secret.encode()
    for k in range(3):
        first, last = (k + 2) // 3, (k + len(raw)) // 3
        if last <= first + 1:
            continue
        for enc in (base64.b64encode(b"\0" * k + raw), base64.urlsafe_b64encode(b"\0" * k + raw)):
            out.add(enc.decode()[first * 4 : last * 4])
    return sorted(out)


def leaks(text: str, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The canaries (in any form) found in ``text``; empty when clean."""
    found = []
    for secret in [*CANARIES.values(), *extra]:
        for form in forms(secret):
            if form in text:
                found.append(f"{secret} (as {form})")
    return found


def capture(kind: str, text: str) -> None:
    """Appends ``text`` to this process's capture of kind ``kind``."""
    if CAPTURE is None:
        return
    CAPTURE.mkdir(parents=True, exist_ok=True)
    with _lock, open(CAPTURE / f"{kind}-py-{os.getpid()}.txt", "a") as f:
        f.write(text if text.endswith("\n") else text + "\n")


def issued(secret: str) -> None:
    """Adds a secret made up at run time to the list the scanner looks for."""
    if CAPTURE is None:
        return
    (CAPTURE / ".issued").mkdir(parents=True, exist_ok=True)
    with _lock, open(CAPTURE / ".issued" / f"py-{os.getpid()}.txt", "a") as f:
        f.write(secret + "\n")


def kernel_stderr_file(env: dict[str, str] | None) -> pathlib.Path | None:
    """A fresh capture file for one kernel's stderr (``kernel-trace-…`` when
    the kernel logs at trace level), or None when nothing is captured."""
    if CAPTURE is None:
        return None
    CAPTURE.mkdir(parents=True, exist_ok=True)
    level = (env or {}).get("CIAO_LOG", "")
    kind = "kernel-trace" if "trace" in level else "kernel-log"
    return CAPTURE / f"{kind}-py-{os.getpid()}-{time.monotonic_ns()}.txt"


def install() -> None:
    """Captures every message jupyter_client deserializes and the stderr of
    kernels it launches (only when a capture directory is set)."""
    if CAPTURE is None:
        return
    from jupyter_client import session
    from jupyter_client.provisioning import local_provisioner

    original = session.Session.deserialize

    def deserialize(self: Any, msg_list: Any, content: bool = True, copy: bool = True) -> dict[str, Any]:
        msg = original(self, msg_list, content=content, copy=copy)
        try:
            text = json.dumps({k: msg.get(k) for k in ("msg_type", "parent_header", "content", "metadata")}, default=str)
        except (TypeError, ValueError):
            text = repr(msg)
        capture("py-messages", text)
        return msg

    session.Session.deserialize = deserialize  # type: ignore[method-assign]

    launch = local_provisioner.launch_kernel

    def launch_kernel(cmd: list[str], **kwargs: Any):
        if kwargs.get("stderr") is None:
            path = kernel_stderr_file(kwargs.get("env"))
            if path is not None:
                with open(path, "ab") as f:
                    kwargs["stderr"] = f
                    return launch(cmd, **kwargs)
        return launch(cmd, **kwargs)

    local_provisioner.launch_kernel = launch_kernel

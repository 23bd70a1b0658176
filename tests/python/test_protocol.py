"""Protocol behaviour driven with jupyter_client and raw pyzmq sockets:
signatures, malformed input, control channel, shutdown, heartbeat,
stop_on_error, execution count, user_expressions, history, comms."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import struct
import subprocess
import time
import uuid
from queue import Empty
from typing import Any

import pytest
import zmq
from jupyter_client.session import Session

from conftest import CIAO_BIN, KERNELSPEC_DIR, RawKernel, kernel_env

TIMEOUT = 15


# ---------------------------------------------------------------- helpers


def session_for(kernel: RawKernel, key: str | None = None) -> Session:
    k = kernel.info["key"] if key is None else key
    return Session(key=k.encode(), signature_scheme="hmac-sha256", username="test")


def raw_socket(kernel: RawKernel, channel: str, kind: int = zmq.DEALER) -> zmq.Socket:
    sock = zmq.Context.instance().socket(kind)
    sock.linger = 0
    sock.connect(f"tcp://{kernel.info['ip']}:{kernel.info[channel + '_port']}")
    return sock


def recv_reply(sock: zmq.Socket, session: Session, timeout: float) -> dict[str, Any] | None:
    """The next message on `sock`, verified with `session`'s key; None if nothing comes."""
    if not sock.poll(int(timeout * 1000)):
        return None
    frames = sock.recv_multipart()
    _, msg_list = session.feed_identities(frames)
    return session.deserialize(msg_list)


def iopub_for(kc, msg_id: str, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
    """iopub messages whose parent is `msg_id`, from busy through idle."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=max(0.05, deadline - time.monotonic()))
        except Empty:
            break
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        seen.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return seen
    raise AssertionError(f"no idle for {msg_id}; saw {[m['msg_type'] for m in seen]}")


def shell_reply(kc, msg_id: str) -> dict[str, Any]:
    while True:
        reply = kc.get_shell_msg(timeout=TIMEOUT)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply


def execute(kc, code: str, **kw: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    msg_id = kc.execute(code, **kw)
    reply = shell_reply(kc, msg_id)
    return reply, iopub_for(kc, msg_id)


def drain(kc) -> None:
    for get in (kc.get_shell_msg, kc.get_iopub_msg):
        while True:
            try:
                get(timeout=0.2)
            except Empty:
                break


def assert_alive(kc) -> None:
    reply = kc.kernel_info(reply=True, timeout=TIMEOUT)
    assert reply["content"]["status"] == "ok"


# ---------------------------------------------------------------- kernel_info


def test_kernel_info_reply_describes_ciao_and_python(kc) -> None:
    c = kc.kernel_info(reply=True, timeout=TIMEOUT)["content"]
    version = subprocess.run([str(CIAO_BIN), "--version"], capture_output=True, text=True, check=True).stdout.split()[-1]
    assert c["protocol_version"] == "5.3"
    assert c["implementation"] == "ciao"
    assert c["implementation_version"] == version
    assert c["language_info"] == {
        "name": "python",
        "version": "3",
        "mimetype": "text/x-python",
        "file_extension": ".py",
        "pygments_lexer": "ipython3",
        "codemirror_mode": {"name": "ipython", "version": 3},
        "nbconvert_exporter": "python",
    }
    for word in ("ciao", "Kubeflow", "%help"):
        assert word in c["banner"]
    assert any("magics" in link["text"] and link["url"].startswith("https://") for link in c["help_links"])


# ---------------------------------------------------------------- signatures and malformed input


def test_wrongly_signed_or_unsigned_requests_get_no_reply_and_the_kernel_keeps_answering(raw_kernel: RawKernel) -> None:
    good = session_for(raw_kernel)
    shell = raw_socket(raw_kernel, "shell")
    try:
        forged = Session(key=b"not-the-key", signature_scheme="hmac-sha256")
        shell.send_multipart(forged.serialize(forged.msg("execute_request", {"code": "%dryrun", "silent": False})))
        assert recv_reply(shell, good, 1.0) is None, "a message signed with another key is dropped"

        frames = good.serialize(good.msg("execute_request", {"code": "%dryrun", "silent": False}))
        frames[1] = b""
        shell.send_multipart(frames)
        assert recv_reply(shell, good, 1.0) is None, "an unsigned message is dropped when the connection has a key"

        frames = good.serialize(good.msg("kernel_info_request", {}))
        frames[1] = frames[1][:-1] + (b"0" if frames[1][-1:] != b"0" else b"1")
        shell.send_multipart(frames)
        assert recv_reply(shell, good, 1.0) is None, "a signature off by one digit is dropped"

        msg = good.msg("kernel_info_request", {})
        shell.send_multipart(good.serialize(msg))
        reply = recv_reply(shell, good, TIMEOUT)
        assert reply is not None and reply["msg_type"] == "kernel_info_reply"
        assert reply["parent_header"]["msg_id"] == msg["header"]["msg_id"]
    finally:
        shell.close()
    assert raw_kernel.proc.poll() is None
    log = raw_kernel.stderr()
    assert "signature does not match" in log and "not signed" in log, log


def test_an_empty_key_means_unsigned_messages(tmp_path: pathlib.Path) -> None:
    kernel = RawKernel(tmp_path, env=kernel_env(tmp_path / "data"), key="")
    try:
        session = Session(key=b"", username="test")
        shell = raw_socket(kernel, "shell")
        msg = session.msg("kernel_info_request", {})
        shell.send_multipart(session.serialize(msg))
        frames = shell.recv_multipart() if shell.poll(TIMEOUT * 1000) else None
        assert frames is not None
        i = frames.index(b"<IDS|MSG>")
        assert frames[i + 1] == b"", "the kernel sends an empty signature"
        assert json.loads(frames[i + 2])["msg_type"] == "kernel_info_reply"
        shell.close()
    finally:
        kernel.stop()


def test_malformed_frames_are_dropped_and_bad_requests_answered_with_errors(raw_kernel: RawKernel) -> None:
    session = session_for(raw_kernel)
    shell = raw_socket(raw_kernel, "shell")
    control = raw_socket(raw_kernel, "control")
    try:

        def signed(parts: list[bytes]) -> list[bytes]:
            return [b"<IDS|MSG>", session.sign(parts), *parts]

        header = json.dumps({"msg_id": "m1", "msg_type": "kernel_info_request", "session": "s", "username": "u", "date": "", "version": "5.3"}).encode()
        garbage = [
            [b"no delimiter at all"],
            [b"<IDS|MSG>"],
            [b"<IDS|MSG>", b"abcd", b"{}"],
            signed([b"{not json", b"{}", b"{}", b"{}"]),
            signed([header, b"{}", b"{}", b"[1, 2, 3]"]),
            signed([b'{"msg_id": 5, "msg_type": "execute_request"}', b"{}", b"{}", b"{}"]),
            signed([b"\xff\xfe\xfd", b"{}", b"{}", b"{}"]),
            signed([header, b"{}", b"[" * 100_000 + b"]" * 100_000, b"{}"]),
            signed([header, b"{}", json.dumps({"pad": "x" * 5_000_000}).encode(), b"{}"])[:-1],
        ]
        for frames in garbage:
            shell.send_multipart(frames)
            control.send_multipart(frames)
        assert recv_reply(shell, session, 1.0) is None
        assert recv_reply(control, session, 0.2) is None

        for sock in (shell, control):
            sock.send_multipart(session.serialize(session.msg("frobnicate_request", {})))
            reply = recv_reply(sock, session, TIMEOUT)
            assert reply is not None
            assert reply["msg_type"] == "frobnicate_reply"
            assert reply["content"]["status"] == "error"
            assert reply["content"]["ename"] == "UnknownMessageType"

        shell.send_multipart(session.serialize(session.msg("execute_request", {"code": ["not", "a", "string"]})))
        reply = recv_reply(shell, session, TIMEOUT)
        assert reply is not None and reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "InvalidRequest" and "code" in reply["content"]["evalue"]

        huge = session.msg("is_complete_request", {"code": "x = 1\n" * 2_000_000})
        shell.send_multipart(session.serialize(huge))
        reply = recv_reply(shell, session, TIMEOUT)
        assert reply is not None and reply["content"]["status"] == "complete"

        shell.send_multipart(session.serialize(session.msg("kernel_info_request", {})))
        reply = recv_reply(shell, session, TIMEOUT)
        assert reply is not None and reply["msg_type"] == "kernel_info_reply"
    finally:
        shell.close()
        control.close()
    assert raw_kernel.proc.poll() is None
    assert "dropped a message" in raw_kernel.stderr()


def test_a_frame_claiming_an_absurd_size_is_refused_before_any_allocation(raw_kernel: RawKernel) -> None:
    # A ZMTP 3.1 greeting followed by a frame header announcing 2**61 bytes:
    # nine bytes that would make the ZeroMQ library's buffer reservation abort.
    greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x01" + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31
    raw_kernel.client().stop_channels()  # listening
    for channel in ("shell", "control", "iopub", "stdin", "hb"):
        s = socket.create_connection((raw_kernel.info["ip"], raw_kernel.info[f"{channel}_port"]), timeout=TIMEOUT)
        s.sendall(greeting + b"\x06" + struct.pack(">Q", 1 << 61))
        s.settimeout(TIMEOUT)
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
        s.close()
    assert raw_kernel.proc.poll() is None, raw_kernel.stderr()
    assert "closed a connection: a frame of 2305843009213693952 bytes" in raw_kernel.stderr()
    kc = raw_kernel.client()
    try:
        assert_alive(kc)
    finally:
        kc.stop_channels()


def test_a_client_that_vanishes_mid_request_never_takes_the_kernel_down(raw_kernel: RawKernel) -> None:
    session = session_for(raw_kernel)
    for _ in range(5):
        shell = raw_socket(raw_kernel, "shell")
        shell.send_multipart(session.serialize(session.msg("execute_request", {"code": "%dryrun\nprint(1)"})))
        shell.send_multipart(session.serialize(session.msg("kernel_info_request", {})))
        shell.close()  # gone before the replies
    time.sleep(0.5)
    kc = raw_kernel.client()
    try:
        reply, _ = execute(kc, "%dryrun\nprint(1)")
        assert reply["content"]["status"] == "ok"
    finally:
        kc.stop_channels()
    assert raw_kernel.proc.poll() is None


def test_an_unsupported_signature_scheme_is_refused_at_start_up(tmp_path: pathlib.Path) -> None:
    conn = tmp_path / "kernel.json"
    conn.write_text(
        json.dumps(
            {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5, "ip": "127.0.0.1",
             "key": "k", "transport": "tcp", "signature_scheme": "hmac-md5", "kernel_name": "ciao"}
        )
    )
    done = subprocess.run([str(CIAO_BIN), "kernel", "--connection-file", str(conn)], capture_output=True, text=True, timeout=30, env=kernel_env())
    assert done.returncode != 0
    assert "hmac-md5" in done.stderr and "hmac-sha256" in done.stderr, done.stderr


def test_ipc_transport_works(tmp_path: pathlib.Path) -> None:
    kernel = RawKernel(tmp_path, env=kernel_env(tmp_path / "data"), transport="ipc", ip=str(tmp_path / "kernel-ipc"))
    try:
        kc = kernel.client()
        assert_alive(kc)
        reply, _ = execute(kc, "%dryrun\nprint(1)")
        assert reply["content"]["status"] == "ok"
        kc.stop_channels()
    finally:
        kernel.stop()


def _gone(pid: int) -> bool:
    """Whether process `pid` has exited (a zombie waiting for its reaper counts)."""
    try:
        status = pathlib.Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return any(line.startswith("State:") and "Z" in line.split()[1] for line in status.splitlines())


def test_a_kernel_whose_launcher_dies_shuts_itself_down(tmp_path: pathlib.Path) -> None:
    from jupyter_client.blocking import BlockingKernelClient
    from jupyter_client.connect import write_connection_file

    conn = str(tmp_path / "kernel.json")
    write_connection_file(conn, key=b"orphan-test-key")
    # A launcher as jupyter_client is one: it names itself in JPY_PARENT_PID.
    launcher_code = (
        "import os, subprocess, sys, time\n"
        "env = dict(os.environ, JPY_PARENT_PID=str(os.getpid()))\n"
        "p = subprocess.Popen([sys.argv[1], 'kernel', '--connection-file', sys.argv[2]], env=env)\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    launcher = subprocess.Popen(
        ["python3", "-c", launcher_code, str(CIAO_BIN), conn], stdout=subprocess.PIPE, text=True, env=kernel_env(tmp_path / "data")
    )
    kernel_pid = int(launcher.stdout.readline())
    try:
        kc = BlockingKernelClient(connection_file=conn)
        kc.load_connection_file()
        kc.start_channels()
        kc.wait_for_ready(timeout=30)
        assert_alive(kc)
        kc.stop_channels()
        assert not _gone(kernel_pid)
        launcher.kill()
        launcher.wait(timeout=10)
        deadline = time.monotonic() + 20
        while not _gone(kernel_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _gone(kernel_pid), "the kernel outlived the process that started it"
    finally:
        if launcher.poll() is None:
            launcher.kill()
        if not _gone(kernel_pid):
            os.kill(kernel_pid, 9)


# ---------------------------------------------------------------- control, shutdown, heartbeat


def test_interrupt_on_control_is_answered_ok_and_the_kernel_stays_responsive(kc) -> None:
    msg = kc.session.msg("interrupt_request", {})
    kc.control_channel.send(msg)
    reply = kc.get_control_msg(timeout=TIMEOUT)
    assert reply["msg_type"] == "interrupt_reply"
    assert reply["parent_header"]["msg_id"] == msg["header"]["msg_id"]
    assert reply["content"] == {"status": "ok"}
    states = [m["content"]["execution_state"] for m in iopub_for(kc, msg["header"]["msg_id"]) if m["msg_type"] == "status"]
    assert states == ["busy", "idle"]
    reply, _ = execute(kc, "%dryrun\nprint(1)")
    assert reply["content"]["status"] == "ok"


@pytest.mark.parametrize("restart", [True, False])
def test_shutdown_on_control_echoes_restart_and_exits_zero(raw_kernel: RawKernel, restart: bool) -> None:
    kc = raw_kernel.client()
    try:
        msg = kc.session.msg("shutdown_request", {"restart": restart})
        kc.control_channel.send(msg)
        reply = kc.get_control_msg(timeout=TIMEOUT)
        assert reply["msg_type"] == "shutdown_reply"
        assert reply["content"] == {"status": "ok", "restart": restart}
        assert raw_kernel.proc.wait(timeout=TIMEOUT) == 0
    finally:
        kc.stop_channels()


def test_shutdown_on_shell_is_accepted_from_old_clients(raw_kernel: RawKernel) -> None:
    session = session_for(raw_kernel)
    shell = raw_socket(raw_kernel, "shell")
    try:
        shell.send_multipart(session.serialize(session.msg("shutdown_request", {"restart": True})))
        reply = recv_reply(shell, session, TIMEOUT)
        assert reply is not None and reply["content"] == {"status": "ok", "restart": True}
    finally:
        shell.close()
    assert raw_kernel.proc.wait(timeout=TIMEOUT) == 0


def test_heartbeat_echoes_what_it_receives(raw_kernel: RawKernel) -> None:
    hb = raw_socket(raw_kernel, "hb", zmq.REQ)
    try:
        for payload in (b"ping", b"\x00\x01binary", uuid.uuid4().bytes * 100):
            hb.send(payload)
            assert hb.poll(TIMEOUT * 1000), "heartbeat answered"
            assert hb.recv() == payload
    finally:
        hb.close()


# ---------------------------------------------------------------- execute semantics


def test_after_a_failed_cell_the_queued_execute_requests_are_aborted(kc) -> None:
    bad = kc.execute("%wroker=2")
    queued = [kc.execute("%dryrun\nprint(1)") for _ in range(3)]
    replies = {}
    while len(replies) < 4:
        r = kc.get_shell_msg(timeout=TIMEOUT)
        replies[r["parent_header"]["msg_id"]] = r
    assert replies[bad]["content"]["status"] == "error"
    assert [replies[q]["content"]["status"] for q in queued] == ["aborted"] * 3
    for q in queued:
        states = [m["content"]["execution_state"] for m in iopub_for(kc, q) if m["msg_type"] == "status"]
        assert states == ["busy", "idle"], "aborted requests are wrapped in busy/idle and run nothing"
    reply, _ = execute(kc, "%dryrun\nprint(1)")
    assert reply["content"]["status"] == "ok", "cells sent after the error reply run again"


def test_stop_on_error_false_lets_the_queued_cells_run(kc) -> None:
    bad = kc.execute("%wroker=2", stop_on_error=False)
    queued = [kc.execute("%dryrun\nprint(1)") for _ in range(2)]
    replies = {}
    while len(replies) < 3:
        r = kc.get_shell_msg(timeout=TIMEOUT)
        replies[r["parent_header"]["msg_id"]] = r
    assert replies[bad]["content"]["status"] == "error"
    assert [replies[q]["content"]["status"] for q in queued] == ["ok", "ok"]


def test_execution_count_advances_only_for_stored_cells_and_silent_publishes_nothing(kc) -> None:
    reply, iopub = execute(kc, "%dryrun\nprint(1)")
    assert reply["content"]["execution_count"] == 1
    kinds = [m["msg_type"] for m in iopub]
    assert kinds == ["status", "execute_input", "execute_result", "status"]
    assert iopub[1]["content"]["execution_count"] == 1
    assert iopub[2]["content"]["execution_count"] == 1

    reply, _ = execute(kc, "%dryrun\nprint(1)", store_history=False)
    assert reply["content"]["execution_count"] == 1

    reply, iopub = execute(kc, "%dryrun\nprint(1)", silent=True, store_history=True)
    assert reply["content"]["status"] == "ok"
    assert reply["content"]["execution_count"] == 1
    assert [m["msg_type"] for m in iopub] == ["status", "status"], "silent: no execute_input, no outputs"

    reply, iopub = execute(kc, "%wroker=2", silent=True)
    assert reply["content"]["status"] == "error"
    assert [m["msg_type"] for m in iopub] == ["status", "status"]

    reply, _ = execute(kc, "%dryrun\nprint(1)")
    assert reply["content"]["execution_count"] == 2


def test_help_on_one_magic_goes_to_the_pager_and_a_wrong_name_suggests_the_nearest(kc) -> None:
    reply, iopub = execute(kc, "%help framework")
    assert reply["content"]["status"] == "ok"
    [page] = reply["content"]["payload"]
    assert page["source"] == "page" and page["start"] == 0
    text = page["data"]["text/plain"]
    assert "%framework=" in text and "tensorflow" in text and "trainjob" in text, text
    # Only the pager shows it: nothing on iopub between busy and idle.
    assert [m["msg_type"] for m in iopub if m["msg_type"] != "status"] == ["execute_input"]
    reply, _ = execute(kc, "%help framwork")
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "MagicError"
    assert "did you mean %framework?" in reply["content"]["evalue"]
    assert reply["content"]["payload"] == []


def test_user_expressions_are_answered_per_expression(kc) -> None:
    reply, _ = execute(kc, "%dryrun\nprint(1)", user_expressions={"fw": "framework", "bad": "nonsense"})
    ue = reply["content"]["user_expressions"]
    assert ue["fw"] == {"status": "ok", "data": {"text/plain": "python"}, "metadata": {}}
    assert ue["bad"]["status"] == "error"
    assert ue["bad"]["ename"] == "NameError"
    assert ue["bad"]["traceback"] and ue["bad"]["evalue"] in ue["bad"]["traceback"][0]


def test_history_persists_across_a_kernel_restart(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "data"
    first = RawKernel(tmp_path, env=kernel_env(data))
    try:
        kc = first.client()
        execute(kc, "%dryrun\nprint('first')")
        execute(kc, "%wroker=2")
        execute(kc, "%dryrun\nprint('not stored')", store_history=False)
        before = kc.history(hist_access_type="tail", n=10, output=True, raw=True, reply=True, timeout=TIMEOUT)["content"]["history"]
        kc.shutdown()
        assert first.proc.wait(timeout=TIMEOUT) == 0
        kc.stop_channels()
    finally:
        first.stop()
    session = before[0][0]
    assert [(h[1], h[2][0]) for h in before] == [(1, "%dryrun\nprint('first')"), (2, "%wroker=2")]
    assert before[0][2][1].startswith("ciao dry run"), "the result's text is kept as output"
    assert before[1][2][1] is None
    assert (data / "ciao" / "history.jsonl").is_file()

    second = RawKernel(tmp_path, env=kernel_env(data))
    try:
        kc = second.client()
        execute(kc, "%dryrun\nprint('second')")
        tail = kc.history(hist_access_type="tail", n=10, raw=True, output=False, reply=True, timeout=TIMEOUT)["content"]["history"]
        assert tail == [
            [session, 1, "%dryrun\nprint('first')"],
            [session, 2, "%wroker=2"],
            [session + 1, 1, "%dryrun\nprint('second')"],
        ]
        previous = kc.history(hist_access_type="range", session=-1, start=1, stop=2, raw=True, output=False, reply=True, timeout=TIMEOUT)
        assert previous["content"]["history"] == [[session, 1, "%dryrun\nprint('first')"]]
        found = kc.history(hist_access_type="search", pattern="*print('*')", unique=True, raw=True, output=False, reply=True, timeout=TIMEOUT)
        assert [h[2] for h in found["content"]["history"]] == ["%dryrun\nprint('first')", "%dryrun\nprint('second')"]
        kc.stop_channels()
    finally:
        second.stop()


def test_a_corrupt_history_file_does_not_stop_the_kernel(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "data"
    (data / "ciao").mkdir(parents=True)
    (data / "ciao" / "history.jsonl").write_bytes(b'\xff\x00garbage\n{"session": 7, "line": 1, "input": "kept"}\n{"sess')
    kernel = RawKernel(tmp_path, env=kernel_env(data))
    try:
        kc = kernel.client()
        reply, _ = execute(kc, "%dryrun\nprint(1)")
        assert reply["content"]["status"] == "ok"
        tail = kc.history(hist_access_type="tail", n=5, raw=True, output=False, reply=True, timeout=TIMEOUT)["content"]["history"]
        assert tail == [[7, 1, "kept"], [8, 1, "%dryrun\nprint(1)"]]
        kc.stop_channels()
    finally:
        kernel.stop()


# ---------------------------------------------------------------- comms and busy/idle


def test_comm_open_to_an_unknown_target_is_answered_with_comm_close(kc) -> None:
    msg = kc.session.msg("comm_open", {"comm_id": "comm-1", "target_name": "jupyter.widget", "data": {}})
    kc.shell_channel.send(msg)
    iopub = iopub_for(kc, msg["header"]["msg_id"])
    assert [m["msg_type"] for m in iopub] == ["status", "comm_close", "status"]
    assert iopub[1]["content"] == {"comm_id": "comm-1", "data": {}}
    for kind in ("comm_msg", "comm_close"):
        msg = kc.session.msg(kind, {"comm_id": "comm-1", "data": {}})
        kc.shell_channel.send(msg)
        assert [m["msg_type"] for m in iopub_for(kc, msg["header"]["msg_id"])] == ["status", "status"]
    reply = kc.comm_info(reply=True, timeout=TIMEOUT)
    assert reply["content"] == {"status": "ok", "comms": {}}, "comm_msg and comm_close got no reply"


def test_every_request_on_shell_and_control_is_wrapped_in_busy_and_idle(kc) -> None:
    requests = [
        ("shell", "kernel_info_request", {}),
        ("control", "kernel_info_request", {}),
        ("shell", "complete_request", {"code": "%frame", "cursor_pos": 6}),
        ("shell", "is_complete_request", {"code": "for i in x:"}),
        ("shell", "inspect_request", {"code": "%framework=tensorflow", "cursor_pos": 3, "detail_level": 0}),
        ("shell", "history_request", {"hist_access_type": "tail", "n": 1, "output": False, "raw": True}),
        ("shell", "comm_info_request", {}),
        ("control", "interrupt_request", {}),
        ("control", "complete_request", {"code": "%frame", "cursor_pos": 6}),
        ("shell", "execute_request", {"code": "%dryrun\nprint(1)", "silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}),
        ("shell", "execute_request", {"code": "%wroker=2", "silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}),
    ]
    for channel, msg_type, content in requests:
        msg = kc.session.msg(msg_type, content)
        getattr(kc, f"{channel}_channel").send(msg)
        reply = (kc.get_control_msg if channel == "control" else kc.get_shell_msg)(timeout=TIMEOUT)
        assert reply["parent_header"]["msg_id"] == msg["header"]["msg_id"]
        iopub = iopub_for(kc, msg["header"]["msg_id"])
        states = [m["content"]["execution_state"] for m in iopub if m["msg_type"] == "status"]
        assert states == ["busy", "idle"], (channel, msg_type, states)
        assert iopub[0]["msg_type"] == "status", "busy comes first"


# ---------------------------------------------------------------- install and notebooks


def test_install_writes_the_absolute_binary_and_real_logos() -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    spec = json.loads((KERNELSPEC_DIR / "kernel.json").read_text())
    assert spec["argv"] == [str(CIAO_BIN), "kernel", "--connection-file", "{connection_file}"]
    assert spec["language"] == "python" and spec["interrupt_mode"] == "message"
    for size in (32, 64):
        png = (KERNELSPEC_DIR / f"logo-{size}x{size}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
        assert struct.unpack(">II", png[16:24]) == (size, size)
    found = KernelSpecManager().get_kernel_spec("ciao")
    assert found.argv[0] == str(CIAO_BIN)
    assert found.language == "python"


@pytest.mark.parametrize("where", ["user", "sys-prefix"])
def test_install_for_the_user_and_the_python_environment(tmp_path: pathlib.Path, where: str) -> None:
    env = kernel_env(tmp_path / "jupyter-data", VIRTUAL_ENV=str(tmp_path / "venv"))
    done = subprocess.run(
        [str(CIAO_BIN), "install", f"--{where}", "--name", "ciao-x", "--display-name", "Ciao X"],
        capture_output=True, text=True, env=env, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    base = tmp_path / ("jupyter-data" if where == "user" else "venv/share/jupyter")
    spec = json.loads((base / "kernels" / "ciao-x" / "kernel.json").read_text())
    assert spec["display_name"] == "Ciao X"
    assert spec["argv"][0] == str(CIAO_BIN)


def test_install_refuses_a_bad_name_with_the_fix(tmp_path: pathlib.Path) -> None:
    done = subprocess.run(
        [str(CIAO_BIN), "install", "--prefix", str(tmp_path), "--name", "bad/name"],
        capture_output=True, text=True, env=kernel_env(), timeout=30,
    )
    assert done.returncode != 0
    assert "bad/name" in done.stderr and "letters, digits" in done.stderr
    assert not (tmp_path / "share").exists()


def test_nbclient_runs_a_notebook_on_ciao() -> None:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%dryrun\nprint(1)"), nbformat.v4.new_code_cell("%help")]
    nb.metadata["kernelspec"] = {"name": "ciao", "display_name": "ciao", "language": "python"}
    NotebookClient(nb, kernel_name="ciao", timeout=60).execute()
    first, second = nb.cells
    assert first.outputs[0]["output_type"] == "execute_result"
    assert first.outputs[0]["data"]["text/plain"].startswith("ciao dry run")
    assert first.execution_count == 1 and second.execution_count == 2
    assert "%framework" in second.outputs[0]["data"]["text/plain"]

    bad = nbformat.v4.new_notebook()
    bad.cells = [nbformat.v4.new_code_cell("%wroker=2")]
    with pytest.raises(CellExecutionError, match="MagicError"):
        NotebookClient(bad, kernel_name="ciao", timeout=60).execute()

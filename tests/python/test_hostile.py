"""Hostile input at every socket of a kernel started with a key.

More than 10,000 malformed or forged messages go to shell, control, stdin,
iopub (a PUB socket: the traffic arrives as subscription messages) and the
heartbeat, in bursts, together with raw TCP byte streams that break the ZMTP
handshake or announce absurd frame sizes. Then the kernel must still be
running, must have executed none of it (no iopub message for any forged
request, no execute_input, no history entry, execution count still 0, no
`%module` kept from a signed-then-altered request), and must answer good
requests as before.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import socket
import struct
import time
import uuid
from collections import Counter
from typing import Any, Iterator

import zmq
from jupyter_client.session import Session

from conftest import RawKernel

DELIM = b"<IDS|MSG>"
MARK = "hostile-probe"
TIMEOUT = 15
ROUTERS = ("shell", "control", "stdin")

# A ZMTP 3.1 greeting with the NULL mechanism, as a client sends it.
GREETING = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x01" + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()


class Forger:
    """Builds hostile multipart messages for a kernel's key. Every forged
    request gets a fresh msg_id, remembered in ``forged_ids``."""

    def __init__(self, key: str) -> None:
        self.key = key.encode()
        self.session = Session(key=self.key, signature_scheme="hmac-sha256", username="test")
        self.wrong = Session(key=b"not-the-kernel-key", signature_scheme="hmac-sha256", username="test")
        self.forged_ids: set[str] = set()
        self.rng = random.Random(20261126)

    def sign(self, parts: list[bytes]) -> bytes:
        h = hmac.new(self.key, digestmod=hashlib.sha256)
        for p in parts:
            h.update(p)
        return h.hexdigest().encode()

    def header(self, msg_type: str, **extra: Any) -> dict[str, Any]:
        msg_id = f"{MARK}-{uuid.uuid4().hex}"
        self.forged_ids.add(msg_id)
        h = {"msg_id": msg_id, "msg_type": msg_type, "session": self.session.session, "username": "test",
             "date": "2026-11-26T00:00:00.000000Z", "version": "5.3"}
        h.update(extra)
        return h

    def parts(self, msg_type: str = "execute_request", content: Any = None, **extra: Any) -> list[bytes]:
        if content is None:
            content = {"code": f"%dryrun\n# {MARK}", "silent": False, "store_history": True}
        return [dumps(self.header(msg_type, **extra)), b"{}", b"{}", dumps(content)]

    def signed(self, parts: list[bytes], ids: tuple[bytes, ...] = ()) -> list[bytes]:
        return [*ids, DELIM, self.sign(parts), *parts]

    def round(self, i: int) -> Iterator[list[bytes]]:
        """One round of forged messages: each is refused by the signature
        check or by decoding; none may reach a handler."""
        p = self.parts()
        sig = self.sign(p)
        # Bad or missing signatures.
        yield [DELIM, self.wrong.sign(p), *p]
        yield [DELIM, b"", *p]
        yield [DELIM, sig[:-1] + (b"0" if sig[-1:] != b"0" else b"1"), *self.parts()]
        yield [DELIM, sig[:32], *self.parts()]
        yield [DELIM, sig + b"00", *self.parts()]
        yield [DELIM, b"zz" * 32, *self.parts()]
        yield [DELIM, bytes(self.rng.getrandbits(8) for _ in range(64)), *self.parts()]
        yield [DELIM, self.sign([b"{}", b"{}", b"{}", b"{}"]), *self.parts()]
        # A valid signature replayed with altered parts: header, parent,
        # metadata, content; the content turns into a %module cell.
        benign = self.parts("kernel_info_request", {})
        good = self.sign(benign)
        hdr = json.loads(benign[0])
        yield [DELIM, good, dumps({**hdr, "msg_type": "execute_request"}), *benign[1:3],
               dumps({"code": f"%module=pwned\n# {MARK}", "silent": False})]
        yield [DELIM, good, *benign[:3], dumps({"code": f"%module=pwned\n# {MARK}"})]
        yield [DELIM, good, benign[0], dumps({"msg_id": "x"}), *benign[2:]]
        yield [DELIM, good, *benign[:2], dumps({"trusted": True}), benign[3]]
        yield [DELIM, good, benign[0] + b" ", *benign[1:]]
        yield [DELIM, good, benign[3], benign[1], benign[2], benign[0]]
        ex = self.parts()
        yield [DELIM, self.sign(ex), ex[0], ex[1], ex[2], dumps({"code": f"%module=pwned\n# {MARK}", "silent": False})]
        # Truncated multipart messages.
        yield p
        yield [sig, *p]
        yield [b"identity-only"]
        yield [b"id-1", b"id-2", b"id-3"]
        yield [DELIM]
        for n in range(5):
            yield [DELIM, sig, *self.parts()[:n]]
        yield [b"id", DELIM, sig]
        # Empty frames.
        yield [b""]
        yield [b"", b"", b""]
        yield [DELIM, b"", b"", b"", b"", b""]
        yield self.signed([b"", b"", b"", b""])
        # Invalid JSON and wrong types, correctly signed: refused by decoding.
        yield self.signed([b"{not json", b"{}", b"{}", b"{}"])
        yield self.signed([self.parts()[0], b"{", b"{}", b"{}"])
        yield self.signed([self.parts()[0], b"{}", b"\xff\xfe", b"{}"])
        yield self.signed([self.parts()[0], b"{}", b"{}", b"{\"code\": \"%dryrun\""])
        yield self.signed([dumps([1, 2, 3]), b"{}", b"{}", b"{}"])
        yield self.signed([self.parts()[0], b"{}", b"{}", dumps("%dryrun")])
        yield self.signed([self.parts()[0], b"{}", b"{}", dumps([f"%dryrun # {MARK}"])])
        yield self.signed([self.parts()[0], b"null", b"{}", b"{}"])
        yield self.signed([self.parts()[0], b"{}", b"42", b"{}"])
        yield self.signed([dumps({**self.header("x"), "msg_type": 5}), b"{}", b"{}", self.parts()[3]])
        yield self.signed([dumps({**self.header("x"), "msg_type": None}), b"{}", b"{}", self.parts()[3]])
        yield self.signed([dumps({**self.header("execute_request"), "msg_id": ["a"]}), b"{}", b"{}", self.parts()[3]])
        yield self.signed([dumps({"msg_type": "execute_request"}), b"{}", b"{}", self.parts()[3]])
        yield self.signed([dumps({**self.header("execute_request"), "session": 7}), b"{}", b"{}", self.parts()[3]])
        yield self.signed([b"[" * 10_000 + b"]" * 10_000, b"{}", b"{}", b"{}"])
        yield self.signed([self.parts()[0], b"{}", b"{}", b'{"a":' * 5_000 + b"1" + b"}" * 5_000])
        # Unknown message types and identity games, wrongly signed.
        for t in ("frobnicate_request", "execute_reply", "", "_request", "shutdown_request", "debug_request"):
            q = self.parts(t, {"restart": False})
            yield [DELIM, self.wrong.sign(q), *q]
        q = self.parts()
        yield [b"dup", b"dup", DELIM, self.wrong.sign(q), *q]
        yield [DELIM, DELIM, self.sign(q), *q]
        yield [b"\x00" * 256, DELIM, b"", *self.parts()]
        # Binary noise.
        yield [bytes(self.rng.getrandbits(8) for _ in range(self.rng.randrange(1, 200))) for _ in range(self.rng.randrange(1, 8))]
        # Huge fields, now and then: a 20 MB code string (wrongly signed,
        # and signed-then-altered), and a 2 MB header.
        if i % 40 == 0:
            big = {"code": f"%dryrun\n# {MARK}\n" + "x" * 20_000_000, "silent": False}
            q = self.parts()
            yield [DELIM, self.wrong.sign(q), q[0], q[1], q[2], dumps(big)]
            yield [DELIM, self.sign(q), q[0], q[1], q[2], dumps(big)]
            yield self.signed([dumps({**self.header("execute_request"), "pad": "h" * 2_000_000}), b"{}", b"{}", b"{}"])[:-1]

    def odd_but_signed(self) -> Iterator[list[bytes]]:
        """Correctly signed requests with a foreign session and user name,
        or with contents of the wrong types: answered (with errors where the
        content is wrong), never executed."""
        yield self.signed(self.parts("kernel_info_request", {}, session="someone-else", username="mallory"))
        yield self.signed(self.parts("is_complete_request", {"code": 5}, session="", username=""))
        yield self.signed(self.parts("complete_request", {"code": "%fr", "cursor_pos": "end"}))
        yield self.signed(self.parts("inspect_request", {"code": "%worker", "cursor_pos": -1}))
        yield self.signed(self.parts("history_request", {"hist_access_type": 7}))
        yield self.signed(self.parts("execute_request", {"code": [f"%dryrun # {MARK}"]}))
        yield self.signed(self.parts("execute_request", {"code": f"%dryrun # {MARK}", "silent": "no"}))
        yield self.signed(self.parts("execute_request", {"code": f"%dryrun # {MARK}", "user_expressions": []}))
        yield self.signed(self.parts("execute_request", {"code": None}))
        yield self.signed(self.parts("frobnicate_request", {}), ids=(b"dup", b"dup"))


def drain(sock: zmq.Socket, into: list[list[bytes]] | None = None, wait_ms: int = 0) -> int:
    n = 0
    while sock.poll(wait_ms):
        msg = sock.recv_multipart()
        if into is not None:
            into.append(msg)
        n += 1
        wait_ms = 0
    return n


def raw_streams(rng: random.Random) -> Iterator[bytes]:
    """Byte streams that break the ZMTP handshake or announce absurd frames."""
    yield b""
    yield bytes(rng.getrandbits(8) for _ in range(300))
    yield b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    yield GREETING[:10]
    yield GREETING[:11] + b"\x09\x09" + GREETING[13:]
    yield GREETING[:12] + b"CURVE".ljust(20, b"\x00") + GREETING[32:]
    yield GREETING[:12] + b"PLAIN".ljust(20, b"\x00") + GREETING[32:]
    yield GREETING + b"\x04\x05READY" + b"\xff" * 40
    yield GREETING + b"\x06" + struct.pack(">Q", 1 << 61)
    yield GREETING + b"\x06" + struct.pack(">Q", (1 << 64) - 1)
    yield GREETING + b"\x02" + struct.pack(">Q", 256 * 1024 * 1024 + 1)
    yield GREETING + b"\x04\x1c\x05READY\x0bSocket-Type\x00\x00\x00\x06DEALER" + b"\x02" + struct.pack(">Q", 1 << 40)
    yield GREETING + b"\x04\x1c\x05READY\x0bSocket-Type\x00\x00\x00\x06DEALER" + b"\x01\x00" * 500 + b"\x00\x00"
    yield GREETING + b"\x04\x1c\x05READY\x0bSocket-Type\x00\x00\x00\x06DEALER" + b"\x00\xff" + b"A" * 100


def send_raw(host: str, port: int, data: bytes) -> None:
    try:
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(data)
            s.settimeout(0.2)
            try:
                s.recv(4096)
            except OSError:
                pass
    except OSError:
        pass


def test_ten_thousand_hostile_messages_at_every_socket_execute_nothing_and_the_kernel_answers(raw_kernel: RawKernel) -> None:
    info = raw_kernel.info
    forger = Forger(info["key"])
    ctx = zmq.Context.instance()

    def connect(kind: int, channel: str) -> zmq.Socket:
        s = ctx.socket(kind)
        s.linger = 0
        s.rcvhwm = 0
        s.sndhwm = 0
        s.connect(f"tcp://{info['ip']}:{info[channel + '_port']}")
        return s

    # The kernel is up before the attack starts (the client waits for it).
    raw_kernel.client().stop_channels()
    watch = connect(zmq.SUB, "iopub")
    watch.setsockopt(zmq.SUBSCRIBE, b"")
    socks = {c: connect(zmq.DEALER, c) for c in ROUTERS}
    xsub = connect(zmq.XSUB, "iopub")
    hb = connect(zmq.DEALER, "hb")
    time.sleep(0.3)

    sent: Counter[str] = Counter()
    replies: dict[str, list[list[bytes]]] = {c: [] for c in ROUTERS}
    published: list[list[bytes]] = []
    echoes: list[list[bytes]] = []
    started = time.monotonic()
    rounds = 0
    while sum(sent.values()) < 10_500 and rounds < 200:
        burst = list(forger.round(rounds))
        for frames in burst:
            for c in ROUTERS:
                socks[c].send_multipart(frames, copy=len(frames[-1]) < 65536)
                sent[c] += 1
            # PUB takes inbound traffic as (un)subscriptions and ignores the rest.
            xsub.send_multipart(frames)
            sent["iopub"] += 1
            # REP wants an empty delimiter first; both shapes arrive.
            hb.send_multipart(frames if rounds % 2 else [b"", *frames])
            sent["hb"] += 1
        for topic in (b"\x01", b"\x00", b"\x01" + os.urandom(16), b"\x00" + MARK.encode(), b"\x01" + b"t" * 70_000):
            xsub.send(topic)
            sent["iopub"] += 1
        for c in ROUTERS:
            drain(socks[c], replies[c])
        drain(watch, published)
        drain(hb, echoes)
        rounds += 1

    # Correctly signed oddities: answered (or ignored on stdin), never run.
    odd: dict[str, set[str]] = {c: set() for c in ROUTERS}
    for c in ROUTERS:
        for frames in forger.odd_but_signed():
            socks[c].send_multipart(frames)
            sent[c] += 1
            odd[c].add(json.loads(frames[frames.index(DELIM) + 2])["msg_id"])
    odd_ids = set().union(*odd.values())

    # Raw byte streams at every port.
    for channel in (*ROUTERS, "iopub", "hb"):
        for data in raw_streams(forger.rng):
            send_raw(info["ip"], info[f"{channel}_port"], data)
            sent[f"{channel} (raw TCP)"] += 1

    total = sum(v for k, v in sent.items() if "raw" not in k)
    attack_time = time.monotonic() - started
    print(f"sent {total} hostile messages in {rounds} rounds and {attack_time:.1f} s: {dict(sent)}")
    assert total >= 10_000, sent
    for c in (*ROUTERS, "iopub", "hb"):
        assert sent[c] >= 1000, f"too little at {c}: {sent}"

    # Everything the kernel says about the attack arrives within a few seconds.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for c in ROUTERS:
            drain(socks[c], replies[c], 50)
        drain(watch, published, 50)
        drain(hb, echoes)

    assert raw_kernel.proc.poll() is None, f"the kernel died: {raw_kernel.stderr()[-3000:]}"

    session = forger.session

    def parsed(frames: list[bytes]) -> dict[str, Any]:
        _, rest = session.feed_identities(frames)
        return session.deserialize(rest)

    # No forged request reached a handler: nothing on iopub names one, no
    # execute_input at all; the odd-but-signed ones were answered on shell
    # and control and ran nothing.
    iopub_msgs = [parsed(f) for f in published]
    parents = {m["parent_header"].get("msg_id") for m in iopub_msgs}
    reached = parents & forger.forged_ids - odd_ids
    assert not reached, f"forged requests reached the kernel core: {sorted(reached)[:5]}"
    assert not [m for m in iopub_msgs if m["msg_type"] in ("execute_input", "execute_result", "stream", "error")], (
        "something ran during the attack"
    )
    for c in ("shell", "control"):
        answered = [parsed(f) for f in replies[c]]
        got = {m["parent_header"]["msg_id"] for m in answered}
        assert got <= odd[c], f"{c} answered forged requests: {sorted(got - odd[c])[:5]}"
        assert got == odd[c], f"{c} left signed requests unanswered: {odd[c] - got}"
        for m in answered:
            if m["msg_type"] == "execute_reply":
                assert m["content"]["status"] == "error", m["content"]
    assert not replies["stdin"], "stdin never answers"

    # Good requests work as before, and nothing ran: the first cell is number 1.
    kc = raw_kernel.client()
    try:
        assert kc.kernel_info(reply=True, timeout=TIMEOUT)["content"]["status"] == "ok"
        msg_id = kc.execute("%dryrun\nprint('after the attack')")
        reply = kc.get_shell_msg(timeout=TIMEOUT)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = kc.get_shell_msg(timeout=TIMEOUT)
        assert reply["content"]["status"] == "ok", reply["content"]
        assert reply["content"]["execution_count"] == 1, "a forged cell took an execution count"

        hist = kc.history(hist_access_type="tail", n=1000, output=False, reply=True, timeout=TIMEOUT)["content"]["history"]
        assert [h[2] for h in hist if MARK in h[2]] == [], "a forged cell reached the history"

        kc.execute("%modules")
        text = ""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and not text:
            m = kc.get_iopub_msg(timeout=TIMEOUT)
            if m["msg_type"] == "execute_result":
                text = m["content"]["data"]["text/plain"]
        assert text and "pwned" not in text, text
    finally:
        kc.stop_channels()

    # The heartbeat still echoes, and the watcher sees the good requests' status.
    req = connect(zmq.REQ, "hb")
    req.send(b"ping")
    assert req.poll(TIMEOUT * 1000), "the heartbeat stopped echoing"
    assert req.recv() == b"ping"
    drain(watch, published, 200)
    assert any(json.loads(f[f.index(DELIM) + 2])["msg_type"] == "status" for f in published[len(iopub_msgs):]), (
        "the iopub subscriber stopped receiving after the subscription flood"
    )
    for s in (*socks.values(), xsub, hb, watch, req):
        s.close()
    assert raw_kernel.proc.poll() is None
    log = raw_kernel.stderr()
    assert "panicked" not in log, log[-3000:]
    assert "signature does not match" in log and "closed a connection" in log
    # The forged messages did reach the kernel (and were refused there), on shell and on control.
    refused = sum(1 for line in log.splitlines() if "dropped a message" in line)
    assert refused >= sent["shell"] + sent["control"] - 100, f"only {refused} refusals logged"


def test_a_signed_then_altered_module_cell_is_never_kept_but_a_signed_one_is(raw_kernel: RawKernel) -> None:
    forger = Forger(raw_kernel.info["key"])
    shell = zmq.Context.instance().socket(zmq.DEALER)
    shell.linger = 0
    shell.connect(f"tcp://{raw_kernel.info['ip']}:{raw_kernel.info['shell_port']}")
    session = forger.session
    try:
        raw_kernel.client().stop_channels()
        # Signed as a harmless cell, then the content swapped for a module.
        harmless = forger.parts("execute_request", {"code": "%dryrun", "silent": False})
        signature = forger.sign(harmless)
        altered = dumps({"code": "%module=pwned\nimport os", "silent": False, "store_history": True})
        shell.send_multipart([DELIM, signature, *harmless[:3], altered])
        assert not shell.poll(1000), "the altered request was answered"

        # The control: the same cell, correctly signed, is kept.
        msg = session.msg("execute_request", {"code": "%module=legit\nimport os", "silent": False})
        shell.send_multipart(session.serialize(msg))
        assert shell.poll(TIMEOUT * 1000)
        reply = session.deserialize(session.feed_identities(shell.recv_multipart())[1])
        assert reply["content"]["status"] == "ok", reply["content"]

        msg = session.msg("execute_request", {"code": "%modules", "silent": False})
        shell.send_multipart(session.serialize(msg))
        assert shell.poll(TIMEOUT * 1000)
        shell.recv_multipart()
        kc = raw_kernel.client()
        try:
            hist = kc.history(hist_access_type="tail", n=10, output=True, reply=True, timeout=TIMEOUT)["content"]["history"]
        finally:
            kc.stop_channels()
        listing = [h[2][1] for h in hist if h[2][0] == "%modules"]
        assert listing and "legit" in listing[-1] and "pwned" not in listing[-1], hist
    finally:
        shell.close()
    assert raw_kernel.proc.poll() is None


def test_a_replayed_request_is_refused_like_ipykernel_does(raw_kernel: RawKernel) -> None:
    forger = Forger(raw_kernel.info["key"])
    session = forger.session
    shell = zmq.Context.instance().socket(zmq.DEALER)
    shell.linger = 0
    shell.connect(f"tcp://{raw_kernel.info['ip']}:{raw_kernel.info['shell_port']}")
    try:
        raw_kernel.client().stop_channels()
        frames = session.serialize(session.msg("execute_request", {"code": "%dryrun", "silent": False}))
        shell.send_multipart(frames)
        assert shell.poll(TIMEOUT * 1000)
        first = session.deserialize(session.feed_identities(shell.recv_multipart())[1])
        assert first["content"]["execution_count"] == 1
        for _ in range(3):
            shell.send_multipart(frames)
        assert not shell.poll(1000), "a replayed request was executed again"
        msg = session.msg("execute_request", {"code": "%dryrun", "silent": False})
        shell.send_multipart(session.serialize(msg))
        assert shell.poll(TIMEOUT * 1000)
        second = session.deserialize(session.feed_identities(shell.recv_multipart())[1])
        assert second["content"]["execution_count"] == 2
    finally:
        shell.close()
    assert raw_kernel.proc.poll() is None
    assert "replayed" in raw_kernel.stderr()

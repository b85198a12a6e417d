"""The lab's DNS server (kubi.lab.dns): NXDOMAIN at once, confined, started and stopped like
the mirror server."""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

import pytest

from kubi.lab import dns, plan
from kubi.lab.plan import LabError


def query(name: str, ident: int = 0x1234, flags: int = 0x0100, qtype: int = 33) -> bytes:
    """A DNS query as resolvers send it (RD set): one question, `qtype` (33: SRV)."""
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", ident, flags, 1, 0, 0, 0) + labels + struct.pack("!HH", qtype, 1)


def test_a_query_is_answered_no_such_name_with_its_question():
    asked = query("_http._tcp.kubi-package-upstream")
    reply = dns.answer(asked)
    assert reply is not None
    ident, flags, questions, answers, authority, additional = struct.unpack_from("!HHHHHH", reply)
    assert (ident, questions, answers, authority, additional) == (0x1234, 1, 0, 0, 0)
    assert flags == 0x8000 | 0x0100 | 0x0080 | 3  # response, RD copied, RA, NXDOMAIN
    assert reply[12:] == asked[12:]


def test_an_edns_query_is_answered_without_its_opt_record():
    opt = b"\0" + struct.pack("!HHIH", 41, 1232, 0, 0)
    asked = bytearray(query("deb.debian.org", qtype=1) + opt)
    asked[10:12] = struct.pack("!H", 1)  # one additional record: the OPT
    reply = dns.answer(bytes(asked))
    assert reply is not None
    assert struct.unpack_from("!HHHHHH", reply)[3:] == (0, 0, 0)
    assert reply[12:] == bytes(asked[12 : len(asked) - len(opt)])


@pytest.mark.parametrize(
    ("message", "rcode"),
    [
        (query("a.example", flags=0x1100), 4),  # opcode 2 (status): not implemented
        (query("a.example")[:-3], 1),  # cut in its question: malformed
        (struct.pack("!HHHHHH", 7, 0x0100, 2, 0, 0, 0) + query("a.example")[12:] * 2, 1),
        (struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\x40" + b"a" * 64 + b"\0\0\1\0\1", 1),
        (struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\0\1\0\1", 1),  # a pointer
    ],
    ids=["status", "cut", "two-questions", "long-label", "pointer"],
)
def test_what_it_cannot_answer_gets_an_error_code_and_no_question(message, rcode):
    reply = dns.answer(message)
    assert reply is not None and len(reply) == 12
    assert struct.unpack_from("!HH", reply)[1] & 0x800F == 0x8000 | rcode


def test_a_response_or_a_scrap_gets_no_reply():
    assert dns.answer(query("a.example", flags=0x8180)) is None  # no answer to an answer
    assert dns.answer(b"\x12\x34\x01") is None


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ask(port: int, message: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(5)
        client.sendto(message, ("127.0.0.1", port))
        return client.recv(4096)


def test_the_server_answers_confined_and_stops(tmp_path):
    port, run_dir = free_udp_port(), tmp_path / "run"
    lines: list[str] = []
    dns.start(lines.append, run_dir=run_dir, port=port, address="127.0.0.1")
    pid = None
    try:
        pid = dns.mirror.server_pid(run_dir, dns.__name__)
        assert pid is not None and dns.serving(port, "127.0.0.1")
        assert lines == [
            "lab: DNS on 127.0.0.1 answers every lab host's question at once (no such name)"
        ]
        if os.geteuid() == 0:  # confined: in an empty folder, as nobody
            assert os.readlink(f"/proc/{pid}/root") == str(run_dir / "empty")
            assert Path(f"/proc/{pid}").stat().st_uid == 65534
        asked = query("kubi-package-upstream", ident=0xBEEF, qtype=28)
        assert ask(port, asked) == dns.answer(asked)
        dns.start(lines.append, run_dir=run_dir, port=port, address="127.0.0.1")
        assert dns.mirror.server_pid(run_dir, dns.__name__) == pid and len(lines) == 1
    finally:
        dns.stop(run_dir)
    assert dns.mirror.server_pid(run_dir, dns.__name__) is None
    assert pid is not None and not Path(f"/proc/{pid}").exists()
    assert not dns.serving(port, "127.0.0.1")


def test_it_listens_only_on_loopback_or_the_bridge(tmp_path):
    for address in ("0.0.0.0", "10.77.0.2", "::"):
        with pytest.raises(SystemExit, match="refusing to listen"):
            dns.serve(free_udp_port(), address, tmp_path)
    assert (plan.GATEWAY, dns.DNS_PORT) == ("10.77.0.1", 53)


def test_a_taken_port_is_named_with_the_log(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(LabError, match=f"port {port} \\(UDP; is the port taken\\?\\); see "):
            dns.start(print, run_dir=tmp_path / "run", port=port, address="127.0.0.1")
    assert "Address already in use" in (tmp_path / "run/log").read_text()
    assert dns.mirror.server_pid(tmp_path / "run", dns.__name__) is None

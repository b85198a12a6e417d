"""The lab's DNS server: to every question from a lab host, "no such name", at once.

Lab hosts have no DNS (docs/lab.md): their resolv.conf names the bridge address, where
nothing else answers. The machine's kernel used to refuse each query with an ICMP "port
unreachable", but it sends at most about one a second to a host (net.ipv4.icmp_ratelimit).
A burst of queries then lost a refusal, and the resolver waited for its timeout: the
repository host's apt-cacher-ng, which asks for the SRV record of its upstream's name
before reading /etc/hosts, answered its first requests `500` after 17 s, twice in every
first converge (37 s of it, issue 11). A platform's own DNS answers NXDOMAIN at once for a
name it does not know, as this server does.

Run like the lab's mirror server (`kubi.lab.mirror`: its own process, started by `kubi lab
up`, stopped by `kubi lab down`, its log and pid file in `plan.LAB_DNS_RUN_DIR`), UDP on
the bridge address only. Started as root for port 53, it binds, then shuts itself into an
empty folder (chroot) and runs as `nobody`.

The process is `python -m kubi.lab.dns serve PORT ADDRESS EMPTY_FOLDER`.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
from pathlib import Path

from kubi.lab import machine, mirror, plan
from kubi.lab.plan import GATEWAY, LAB_DNS_RUN_DIR, LabError, Log

DNS_PORT = 53
NXDOMAIN, FORMERR, NOTIMP = 3, 1, 4
HEADER = struct.Struct("!HHHHHH")  # id, flags, question, answer, authority, additional counts


def answer(query: bytes) -> bytes | None:
    """The reply to one DNS message: NXDOMAIN for a standard query of one question (the
    question copied, no records), FORMERR for a malformed one, NOTIMP for another opcode;
    None (no reply) for what is not a query at all."""
    if len(query) < HEADER.size:
        return None
    ident, flags, questions = HEADER.unpack_from(query)[:3]
    if flags & 0x8000:  # a response: never answer one (no loops between servers)
        return None
    opcode = flags & 0x7800
    question = _question(query) if questions == 1 else None
    if opcode:
        rcode, body = NOTIMP, b""
    elif question is None:
        rcode, body = FORMERR, b""
    else:  # the question copied back, as resolvers expect
        rcode, body = NXDOMAIN, question
    # QR, the query's opcode and RD, RA
    reply_flags = 0x8000 | opcode | (flags & 0x0100) | 0x0080 | rcode
    return HEADER.pack(ident, reply_flags, 1 if body else 0, 0, 0, 0) + body


def _question(message: bytes) -> bytes | None:
    """The first question's bytes (name, type, class), or None if malformed; a compressed
    name (a pointer) is malformed in a question that comes first."""
    at = HEADER.size
    while True:
        if at >= len(message):
            return None
        length = message[at]
        if length == 0:
            at += 1
            break
        if length > 63:
            return None
        at += 1 + length
    if at + 4 > len(message) or at - HEADER.size > 255:
        return None
    return message[HEADER.size : at + 4]


def serve(port: int, address: str, empty: Path) -> None:
    """Answer on `address` until killed. As root: bind, then chroot into `empty` and become
    `nobody`."""
    if address not in mirror.ALLOWED_ADDRESSES:
        raise SystemExit(f"kubi-lab-dns: refusing to listen on {address}")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, port))
    if os.geteuid() == 0:
        mirror.confine(empty)
    print(f"kubi-lab-dns: answering NXDOMAIN on {address} port {port}", flush=True)
    mirror.say_ready()
    while True:
        query, peer = sock.recvfrom(4096)
        reply = answer(query)
        if reply is not None:
            sock.sendto(reply, peer)


# --- the process, from `kubi lab up` / `down` ------------------------------------------------


def serving(port: int = DNS_PORT, address: str = GATEWAY) -> bool:
    return f"{address}:{port}" in plan.listening(machine.run("ss", "-Hlun").stdout)


def start(
    log: Log, run_dir: Path = LAB_DNS_RUN_DIR, port: int = DNS_PORT, address: str = GATEWAY
) -> None:
    """The DNS server on the bridge address, started unless it already answers there."""
    if mirror.server_pid(run_dir, __name__) is not None and serving(port, address):
        return
    empty = run_dir / "empty"
    empty.mkdir(parents=True, exist_ok=True)
    if not mirror.spawn(__name__, [str(port), address, str(empty)], run_dir) or not serving(
        port, address
    ):
        stop(run_dir)
        raise LabError(
            f"the lab's DNS server does not answer on {address} port {port} (UDP; is the port "
            f"taken?); see {run_dir / 'log'}."
        )
    log(f"lab: DNS on {address} answers every lab host's question at once (no such name)")


def stop(run_dir: Path = LAB_DNS_RUN_DIR) -> None:
    """Stop the lab's DNS server, and no other process."""
    mirror.stop(run_dir, __name__)


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != mirror.SERVE:
        raise SystemExit("usage: python -m kubi.lab.dns serve PORT ADDRESS EMPTY_FOLDER")
    serve(int(sys.argv[2]), sys.argv[3], Path(sys.argv[4]))

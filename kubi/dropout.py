"""Hosts that drop out of a run: one line naming the host and the cause, the others go on.

A host can go down, or its network be cut, while pyinfra plans or executes. pyinfra treats
a failing command as that host's own failure when it raises OSError or paramiko's
SSHException, and already drops a host that is down before the run. But a connection lost
under it surfaces as other types (paramiko's stored EOFError when its transport ended,
pyinfra's ConnectError when no SFTP channel opens on a dead transport), and those abort the
whole platform with a traceback naming no host. And a host that died without closing its
connections (a power cut) is never noticed: commands wait on it for ever.

So, under the pyinfra CLI (`install`):
- every SSH connection sends keepalives and gives up on data unacknowledged for
  DEAD_AFTER seconds (`watch`), so a dead host is noticed within a minute;
- an error of the SSH connector on a dead connection becomes `LostWhileExecuting`, an
  OSError that pyinfra counts as that host's failure, or, while the run plans,
  `LostWhilePlanning`, which the component wrapper (kubi.deploy) catches to drop the host;
- each lost host is said once, when it is lost, and once more in the closing summary, which
  explains the errors pyinfra counts for every operation the host did not run.
"""

from __future__ import annotations

import atexit
import functools
import logging
import socket
import sys
import time
from typing import Any

logger = logging.getLogger("pyinfra")

KEEPALIVE = 10  # seconds between SSH keepalives on an idle connection
DEAD_AFTER = 30  # seconds of unacknowledged data before a connection is given up
SETTLE = 1.0  # seconds for paramiko to mark a transport that met its end inactive

# host name -> where it was lost ("while planning" or "during '<operation>'")
dropped: dict[str, str] = {}


class LostWhilePlanning(Exception):
    """The host's connection was lost while pyinfra planned: drop the host."""


class LostWhileExecuting(ConnectionError):
    """The host's connection was lost while pyinfra executed (pyinfra fails the host)."""


def alive(connector: Any) -> bool:
    """Whether the connector's SSH transport still runs (False without one)."""
    client = getattr(connector, "client", None)
    transport = client.get_transport() if client is not None else None
    return transport is not None and transport.is_active()


def watch(host: Any) -> None:
    """Keepalives, and a bound on unacknowledged data, on the host's SSH connection."""
    client = getattr(host.connector, "client", None)
    transport = client.get_transport() if client is not None else None
    if transport is None or getattr(transport, "_kubi_watched", False):
        return
    transport.set_keepalive(KEEPALIVE)
    sock = transport.sock
    # A direct TCP connection; through a jump host the outer connection carries the bound.
    if isinstance(sock, socket.socket) and hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, DEAD_AFTER * 1000)
    transport._kubi_watched = True


def lost(
    host: Any, state: Any, cause: BaseException | None
) -> LostWhilePlanning | LostWhileExecuting:
    """Record and say once that `host` dropped out; the exception to raise for it."""
    from pyinfra.api.state import StateStage

    executing = state.current_stage == StateStage.Execute
    op_hash = getattr(host, "executing_op_hash", None) if executing else None
    where = "while planning"
    if op_hash is not None:
        where = f"during '{' | '.join(state.get_op_meta(op_hash).names)}'"
    why = f" ({type(cause).__name__})" if cause is not None else ""
    message = (
        f"kubi: {host.name} dropped out of this run {where}: its SSH connection was lost{why} "
        "(the host went down or its network was cut); the other hosts go on"
    )
    if host.name not in dropped:
        dropped[host.name] = where
        logger.error(message)
    short = f"SSH connection to {host.name} lost"  # pyinfra repeats it in its own error line
    return LostWhileExecuting(short) if executing else LostWhilePlanning(short)


def dead(connector: Any, error: BaseException | None) -> bool:
    """Whether the connection has ended. paramiko's writer meets the closed socket (EOFError)
    before its reader thread marks the transport inactive: an EOFError is an end at once;
    otherwise the transport gets SETTLE seconds to say so."""
    if isinstance(error, EOFError):
        return True
    deadline = time.monotonic() + SETTLE
    while alive(connector):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _guarded(method: Any) -> Any:
    """A connector method whose failures on a dead connection say that the host is lost."""

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            result = method(self, *args, **kwargs)
        except (LostWhilePlanning, LostWhileExecuting):
            raise
        except Exception as exc:
            if not dead(self, exc):
                raise
            raise lost(self.host, self.state, exc) from None
        # A command cut short by the connection's end returns a plain failure (no wait here:
        # commands and facts fail for ordinary reasons on live hosts too).
        failed = result is False or (isinstance(result, tuple) and result[0] is False)
        if failed and getattr(self, "client", None) is not None and not alive(self):
            raise lost(self.host, self.state, None)
        return result

    call._kubi_guarded = True  # type: ignore[attr-defined]
    return call


def install() -> None:
    """Guard pyinfra's SSH connector and say at exit which hosts dropped out (once)."""
    from pyinfra.connectors.ssh import SSHConnector

    for name in ("run_shell_command", "put_file", "get_file"):
        method = getattr(SSHConnector, name)
        if not getattr(method, "_kubi_guarded", False):
            setattr(SSHConnector, name, _guarded(method))
    if not getattr(install, "_summary", False):
        atexit.register(summary)
        install._summary = True  # type: ignore[attr-defined]


def summary() -> None:
    """The closing line about the hosts that dropped out, after pyinfra's results."""
    if not dropped:
        return
    hosts = "; ".join(f"{name} {where}" for name, where in sorted(dropped.items()))
    print(
        f"kubi: {len(dropped)} host(s) dropped out of this run: {hosts}. The operations they "
        "did not run are counted as errors above; the other hosts went on. Once the host is "
        "back, run again: a re-run converges.",
        file=sys.stderr,
    )

"""One run at a time: a lock per platform on the deployer, and a lock on each host.

Two runs that overlap interleave their writes and apt calls, and the loser may leave a file
half written. So a pyinfra run of kubi takes:

- on the deployer, an flock on ``<secrets>/deploy.lock`` when the inventory is loaded,
  held until the process exits (the kernel releases it, also after a crash);
- on each host, before its first component is planned, an flock on ``/run/kubi-deploy.lock``
  held by a process (``cat``) that lives as long as this run's SSH connection: when the
  run ends, or dies, sshd closes the session and the lock goes with it. Runs from two
  deployers' machines meet here.

A run that finds a lock held stops at once with one line naming the holder and since when.
A holder whose deployer vanished without closing its connection (power loss) keeps the host
lock until sshd notices; `kubi unlock HOST... --inventory inventories/<env>.py` ends it.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import getpass
import os
import shlex
import socket
import weakref
from pathlib import Path
from typing import Any

from kubi import dropout

HOST_LOCK = "/run/kubi-deploy.lock"
HOST_HOLDER = "/run/kubi-deploy.holder"  # "<pid of the holding process> <who> since <when>"
LOCKED = 75  # exit status of the lock script when another run holds the lock

_deployer_fds: dict[Path, int] = {}
# Per pyinfra state, per host: the SSH channel whose process holds the host's lock.
_channels: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class RunLocked(Exception):
    """Another run holds a lock; the message names it."""


def holder() -> str:
    """Who this run is, for the other runs' messages."""
    since = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{getpass.getuser()}@{socket.gethostname()} (pid {os.getpid()}) since {since}"


def lock_deployer(platform_name: str, folder: Path) -> None:
    """Take the platform's lock on this machine for the life of this process."""
    path = folder / "deploy.lock"
    if path in _deployer_fds:
        return
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        who = os.read(fd, 500).decode(errors="replace").strip() or "another run"
        os.close(fd)
        raise RunLocked(
            f"kubi: platform {platform_name} is being deployed from this machine by {who}; "
            "wait for that run to end (its lock ends with its process)"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, (holder() + "\n").encode(), 0)
    _deployer_fds[path] = fd


def lock_script(who: str) -> str:
    """Shell that takes the host lock and keeps it while its stdin stays open.

    It prints ``locked`` once it holds the lock, or the holder's line and exits LOCKED.
    `exec cat` keeps the shell's pid, written to HOST_HOLDER, for `kubi unlock`.
    """
    return (
        f"exec 9>>{HOST_LOCK}; "
        f"if ! flock -n 9; then cat {HOST_HOLDER} 2>/dev/null || echo 'another run'; "
        f"exit {LOCKED}; fi; "
        f'echo "$$ "{shlex.quote(who)} > {HOST_HOLDER}; echo locked; exec cat >/dev/null'
    )


def unlock_script() -> str:
    """Shell that ends the process holding the host lock (`kubi unlock`)."""
    return (
        f"read -r pid who < {HOST_HOLDER} 2>/dev/null || {{ echo 'no lock held'; exit 0; }}; "
        # Only that very process: a `cat` whose fd 9 is the lock file.
        f'if [ "$(readlink /proc/$pid/fd/9 2>/dev/null)" = {HOST_LOCK} ]; then '
        f'kill "$pid" && echo "ended the run of $who"; else echo "no lock held"; fi'
    )


def lock_host(host: Any, state: Any, who: str) -> None:
    """Take `host`'s lock for the rest of this run, once; nothing without an SSH connection
    (plans, pyinfra's @local)."""
    held = _channels.setdefault(state, {})
    if host.name in held:
        return
    client = getattr(host.connector, "client", None)
    if client is None or not host.connected:
        return
    script = lock_script(who)
    if host.data.get("_sudo"):
        script = f"sudo -n sh -c {shlex.quote(script)}"
    try:
        channel = client.get_transport().open_session()
        channel.settimeout(30)
        channel.exec_command(script)
        first = channel.makefile("r").readline().strip()
    except Exception as exc:  # a host that went down since pyinfra connected
        if not dropout.dead(host.connector, exc):
            raise
        raise dropout.lost(host, state, exc) from None
    if first != "locked":
        channel.close()
        if not first and dropout.dead(host.connector, None):  # a lock taken says "locked"
            raise dropout.lost(host, state, None)
        raise RunLocked(
            f"kubi: {host.name} is being deployed by another run: {_who(first)}; wait for it "
            f"to end, or if that run is gone: kubi unlock {host.name} --inventory <inventory>"
        )
    held[host.name] = channel


def _who(line: str) -> str:
    pid, _, who = line.partition(" ")
    return who if pid.isdigit() else line or "unknown"

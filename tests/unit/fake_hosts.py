"""Fake platform hosts for the `kubi` commands that work over SSH (kubi.ssh.SshHost's
shape): each command is recorded with its host and stdin, and answered by the test."""

from __future__ import annotations

from collections.abc import Callable

from kubi.ssh import Completed


class FakeHosts:
    """`connect(name, host_data)` for a command under test.

    + answer: (host, command) -> Completed, or None for an empty success
    + dead: hosts whose connection fails, with `error`
    """

    def __init__(
        self,
        answer: Callable[[str, str], Completed | None] = lambda host, command: None,
        dead: tuple[str, ...] = (),
        error: type[Exception] = OSError,
    ):
        self.ran: list[tuple[str, str, bytes]] = []
        self.answer, self.dead, self.error = answer, dead, error

    def __call__(self, name: str, data: dict) -> _Host:
        if name in self.dead:
            raise self.error(f"cannot connect to {name}")
        return _Host(self, name)


class _Host:
    def __init__(self, hosts: FakeHosts, name: str):
        self.hosts, self.where = hosts, name

    def __enter__(self) -> _Host:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def run(self, command: str, stdin: bytes = b"") -> Completed:
        self.hosts.ran.append((self.where, command, stdin))
        return self.hosts.answer(self.where, command) or Completed(0, b"", b"")

"""SSH from the `kubi` command to a platform host, with the inventory's connection data.

pyinfra reaches the hosts during a deploy; some commands of `kubi` itself reach them too
(`kubi charts publish` today; fetching a kubeconfig, a tunnel to the Kubernetes API and
cluster operations next). They all connect here, so every one of them honours the same
settings the same way: `DeclaredPlatform.host_data(name)` gives the address
(``ssh_hostname``), ``ssh_user``, ``ssh_port``, ``ssh_key``, ``_sudo``,
``ssh_connect_timeout``, ``ssh_known_hosts_file`` (default ``~/.ssh/known_hosts``) and
``ssh_strict_host_key_checking``:

- ``yes``: a host whose key is not in the known_hosts file is refused;
- ``accept-new``: an unknown host's key is recorded there, a changed key is refused;
- ``no``: any key is accepted and none is recorded.

With ``ssh_key``, that key alone authenticates (as ``ssh -i`` with pyinfra's data);
without, the SSH agent and the usual ``~/.ssh`` keys do.

The connection is a fabric `Connection`, configured so that nothing else decides behind
the inventory's back: no ``~/.ssh/config`` or ``/etc/ssh/ssh_config``, no fabric
configuration files, and kubi's own host key policy instead of fabric's accept-anything
default. Commands do not go through fabric's `run`, which decodes the streams as text:
archives travel on stdin and stdout, so `SshHost.run` moves bytes over an exec channel
of the same connection. A local port forward (the API tunnel) uses the same connection
(`SshHost.forward`), with kubi's own forwarder rather than fabric's, whose channel opening
waits up to an hour and whose teardown then waits for it.
"""

from __future__ import annotations

import base64
import hashlib
import shlex
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
POLICIES = ("yes", "accept-new", "no")
FORWARD_OPEN_TIMEOUT = 15.0  # seconds for the host to open a forwarded connection


class SshError(Exception):
    """A host cannot be reached or used over SSH; the message says which and what to check."""


@dataclass
class Completed:
    returncode: int
    stdout: bytes
    stderr: bytes


class Runner(Protocol):
    """Runs one shell command on a host, with bytes on its stdin."""

    where: str  # the host, for messages

    def run(self, command: str, stdin: bytes = b"") -> Completed: ...


class LocalRunner:
    """This machine's `sh`, in place of a host: tests, or a command run on the host itself."""

    where = "localhost"

    def run(self, command: str, stdin: bytes = b"") -> Completed:
        done = subprocess.run(["sh", "-c", command], input=stdin, capture_output=True)
        return Completed(done.returncode, done.stdout, done.stderr)

    def close(self) -> None:
        pass


class SshHost:
    """One SSH connection to the platform host `name`, open until `close` (or `with`)."""

    def __init__(self, name: str, host_data: dict[str, Any]):
        import fabric

        self.where = name
        self.sudo = bool(host_data.get("_sudo"))
        self.address = host_data["ssh_hostname"]
        self.port = int(host_data.get("ssh_port") or 22)
        self.user = host_data.get("ssh_user") or None
        self.key = host_data.get("ssh_key") or None
        self.timeout = host_data.get("ssh_connect_timeout") or 10
        self.known_hosts = Path(
            host_data.get("ssh_known_hosts_file") or DEFAULT_KNOWN_HOSTS
        ).expanduser()
        self.strict = host_data.get("ssh_strict_host_key_checking") or "yes"
        if self.strict not in POLICIES:
            raise SshError(
                f"{name}: ssh_strict_host_key_checking is {self.strict!r}; use one of "
                f"{', '.join(POLICIES)}"
            )
        auth = (
            {"key_filename": [self.key], "allow_agent": False, "look_for_keys": False}
            if self.key
            else {"allow_agent": True, "look_for_keys": True}
        )
        # lazy: no fabric or OpenSSH configuration file is read (their defaults stay).
        config = fabric.Config(lazy=True)
        self.connection = fabric.Connection(
            self.address,
            user=self.user,
            port=self.port,
            config=config,
            connect_timeout=self.timeout,
            connect_kwargs=auth,
            forward_agent=False,
        )
        self.user = self.connection.user
        client = self.connection.client
        if self.strict != "no" and self.known_hosts.is_file():
            client.load_host_keys(str(self.known_hosts))
        client.set_missing_host_key_policy(_policy(self.strict, self.known_hosts))
        self._open()

    def _open(self) -> None:
        import paramiko

        try:
            self.connection.open()
        except _UnknownHostKey:
            self._fail(
                f"its host key is not in {self.known_hosts} and ssh.strict_host_key_checking "
                "is yes; add the host's key to that file (compare its fingerprint with the "
                "host's own first), or use accept-new"
            )
        except paramiko.BadHostKeyException as exc:
            self._fail(
                f"its host key changed: it offers {exc.key.get_name()} {_sha256(exc.key)}, "
                f"not the key recorded in {self.known_hosts}; if the host was reinstalled, "
                "remove its old line there "
                "(ssh-keygen -R), otherwise find out who answers at that address"
            )
        except paramiko.AuthenticationException as exc:
            key = self.key or "the SSH agent and ~/.ssh keys"
            self._fail(
                f"authentication failed ({exc}); check ssh_user ({self.user}) and ssh_key "
                f"({key}) in the inventory, and that the key is authorised on the host"
            )
        except TimeoutError:
            self._fail(
                f"no answer within {self.timeout} s; check the address, the port and any "
                "firewall between, or raise ssh.connect_timeout"
            )
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self._fail(
                f"{exc.__class__.__name__}: {exc}; check the address and port in the "
                "inventory and that sshd runs on the host"
            )

    def _fail(self, reason: str) -> None:
        self.connection.close()
        raise SshError(
            f"cannot connect to {self.where} ({self.address}:{self.port}) over SSH as "
            f"{self.user}: {reason}"
        ) from None

    def run(self, command: str, stdin: bytes = b"") -> Completed:
        """Run `command` with `stdin` (through `sudo -n` when the host data says `_sudo`).

        Stdin is written, and stdout and stderr read, at the same time: a command may
        answer before it has read all of its input, and either stream may be large.
        """
        if self.sudo:
            command = f"sudo -n sh -c {shlex.quote(command)}"
        transport = self.connection.transport
        if transport is None or not transport.is_active():
            raise SshError(f"the SSH connection to {self.where} is closed")
        channel = transport.open_session()
        try:
            channel.exec_command(command)
            errors: list[bytes] = []

            def feed() -> None:
                if stdin:
                    channel.sendall(stdin)
                channel.shutdown_write()

            def drain_stderr() -> None:
                errors.append(channel.makefile_stderr("rb").read())

            workers = [threading.Thread(target=f, daemon=True) for f in (feed, drain_stderr)]
            for worker in workers:
                worker.start()
            out = channel.makefile("rb").read()
            for worker in workers:
                worker.join()
            return Completed(channel.recv_exit_status(), out, b"".join(errors))
        except OSError as exc:  # the connection dropped mid-command
            raise SshError(
                f"the SSH connection to {self.where} ({self.address}:{self.port}) failed "
                f"during a command: {exc}"
            ) from None
        finally:
            channel.close()

    @contextmanager
    def forward(self, remote_host: str, remote_port: int) -> Iterator[int]:
        """A local port of 127.0.0.1 (chosen by the system, and listening before this
        returns) whose every connection goes to `remote_host`:`remote_port` as the host
        sees it, through this SSH connection (``ssh -L``). Each channel opens within
        FORWARD_OPEN_TIMEOUT or its connection is closed; leaving the block closes them all
        and waits a bounded time for the workers."""
        transport = self.connection.transport
        if transport is None or not transport.is_active():
            raise SshError(f"the SSH connection to {self.where} is closed")
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.settimeout(0.2)
        done = threading.Event()
        workers: list[threading.Thread] = []
        open_sockets: list[Any] = []

        def pump(source: Any, target: Any) -> None:
            try:
                while not done.is_set():
                    data = source.recv(65536)
                    if not data:
                        break
                    target.sendall(data)
            except (OSError, EOFError):
                pass
            finally:
                for end in (source, target):
                    with suppress(OSError, EOFError):
                        end.close()

        def serve() -> None:
            while not done.is_set():
                try:
                    client, origin = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                client.settimeout(None)
                try:
                    channel = transport.open_channel(
                        "direct-tcpip", (remote_host, remote_port), origin,
                        timeout=FORWARD_OPEN_TIMEOUT,
                    )  # fmt: skip
                except Exception:  # noqa: BLE001 - refused or timed out: that client gets EOF
                    client.close()
                    continue
                open_sockets.extend((client, channel))
                for source, target in ((client, channel), (channel, client)):
                    worker = threading.Thread(target=pump, args=(source, target), daemon=True)
                    worker.start()
                    workers.append(worker)

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        try:
            yield int(listener.getsockname()[1])
        finally:
            done.set()
            for end in (listener, *open_sockets):
                with suppress(OSError, EOFError):
                    end.close()
            for worker in (server, *workers):
                worker.join(timeout=5)

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> SshHost:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _sha256(key) -> str:
    """A key's fingerprint as OpenSSH shows it (ssh-keygen -l, the first connection)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _UnknownHostKey(Exception):
    """The host's key is not in the known_hosts file and the policy is `yes`."""


# paramiko asks the policy about a key the known_hosts file does not hold (a key that
# differs from a recorded one is refused before that, whatever the policy).


class _Refuse:
    def missing_host_key(self, client, hostname, key):
        raise _UnknownHostKey(hostname)


@dataclass
class _Record:
    """OpenSSH's accept-new: the key is appended to the file (never rewritten)."""

    known_hosts: Path

    def missing_host_key(self, client, hostname, key):
        from paramiko.hostkeys import HostKeyEntry

        self.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self.known_hosts.open("a") as recorded:
            recorded.write(HostKeyEntry([hostname], key).to_line())


class _Accept:
    def missing_host_key(self, client, hostname, key):
        pass


def _policy(strict: str, known_hosts: Path):
    return {"yes": _Refuse(), "accept-new": _Record(known_hosts), "no": _Accept()}[strict]

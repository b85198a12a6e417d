"""kubi.ssh against a real OpenSSH server on 127.0.0.1: host key policies, bytes through
stdin and stdout, sudo, and the errors an operator sees.

The test starts its own sshd (Debian's openssh-server binary) with its own configuration,
host key and authorized key in a temporary folder, listening on 127.0.0.1 only, and stops
it afterwards; no system service is involved.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from kubi.ssh import LocalRunner, SshError, SshHost

SSHD = Path("/usr/sbin/sshd")

NO_SSHD = "needs /usr/sbin/sshd: apt-get install --no-install-recommends openssh-server"
# CI bootstraps the machine first (.ci/run), which installs it: there a skip would hide a
# missing install step, so the tests run and fail instead.
pytestmark = pytest.mark.skipif(
    not SSHD.exists() and os.environ.get("CI") != "true", reason=NO_SSHD
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def keygen(path: Path) -> str:
    """A new ed25519 key pair at `path`; returns the public key line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kubi-test", "-f", str(path)],
        check=True,
    )
    return path.with_suffix(".pub").read_text().strip()


class Sshd:
    """sshd -D on 127.0.0.1:<free port>, everything it reads in `root`."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        root.mkdir()
        self.host_key = keygen(root / "host_key")
        self.client_key = root / "client_key"
        (root / "authorized_keys").write_text(keygen(self.client_key) + "\n")
        # A stand-in sudo on the session's PATH: records its arguments, runs the rest.
        bin_dir = root / "bin"
        bin_dir.mkdir()
        sudo = bin_dir / "sudo"
        sudo.write_text(
            f'#!/bin/sh\nprintf "%s\\n" "$*" > {root}/sudo.args\n'
            '[ "$1" = -n ] && shift\nexec "$@"\n'
        )
        sudo.chmod(0o755)
        config = root / "sshd_config"
        config.write_text(
            f"ListenAddress 127.0.0.1:{self.port}\n"
            f"HostKey {root}/host_key\n"
            f"PidFile {root}/sshd.pid\n"
            f"AuthorizedKeysFile {root}/authorized_keys\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            f"PermitRootLogin prohibit-password\nAllowUsers {self.user}\n"
            f"SetEnv PATH={bin_dir}:/usr/bin:/bin\nLogLevel ERROR\n"
        )
        # As root, sshd needs its privilege separation folder (the system service makes it).
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.process = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=open(root / "sshd.log", "wb"),  # noqa: SIM115 - closed with the process
        )
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            assert self.process.poll() is None, (root / "sshd.log").read_text()
            assert time.monotonic() < deadline, "sshd did not listen within 10 s"
            time.sleep(0.05)

    @property
    def user(self) -> str:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name

    def host_data(self, strict: str, known_hosts: Path, **more) -> dict:
        return {
            "ssh_hostname": "127.0.0.1",
            "ssh_user": self.user,
            "ssh_port": self.port,
            "ssh_key": str(self.client_key),
            "ssh_strict_host_key_checking": strict,
            "ssh_known_hosts_file": str(known_hosts),
            "ssh_connect_timeout": 5,
            **more,
        }

    def known_line(self, public_key: str | None = None) -> str:
        kind, blob = (public_key or self.host_key).split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {blob}\n"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = Sshd(tmp_path_factory.mktemp("sshd") / "server")
    yield server
    server.stop()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty home: nothing of this machine's user (keys, known_hosts, config) leaks in."""
    folder = tmp_path / "home"
    (folder / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(folder))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return folder


def connect(sshd, strict, known_hosts, **more) -> SshHost:
    return SshHost("test-host", sshd.host_data(strict, known_hosts, **more))


# --- host key policies -----------------------------------------------------------------------


def test_accept_new_records_an_unknown_key_once(sshd, home):
    known = home / "kubi" / "known_hosts"  # its folder does not exist yet
    with connect(sshd, "accept-new", known) as host:
        assert host.run("echo hello").stdout == b"hello\n"
    assert known.read_text() == sshd.known_line()
    with connect(sshd, "accept-new", known) as host:  # known now: nothing added
        assert host.run("true").returncode == 0
    assert known.read_text() == sshd.known_line()


def test_yes_refuses_an_unknown_key_and_records_nothing(sshd, home):
    known = home / "known_hosts"
    with pytest.raises(SshError) as refused:
        connect(sshd, "yes", known)
    assert str(refused.value).startswith(
        f"cannot connect to test-host (127.0.0.1:{sshd.port}) over SSH as {sshd.user}: its host "
        f"key is not in {known} and ssh.strict_host_key_checking is yes"
    )
    assert not known.exists()
    known.write_text(sshd.known_line())
    with connect(sshd, "yes", known) as host:
        assert host.run("echo ok").stdout == b"ok\n"
    assert known.read_text() == sshd.known_line()


@pytest.mark.parametrize("strict", ["yes", "accept-new"])
def test_a_changed_key_is_refused(sshd, home, tmp_path, strict):
    known = home / "known_hosts"
    recorded = sshd.known_line(keygen(tmp_path / "other_host_key"))
    known.write_text(recorded)
    with pytest.raises(SshError) as refused:
        connect(sshd, strict, known)
    message = str(refused.value)
    assert f"test-host (127.0.0.1:{sshd.port})" in message
    blob = base64.b64decode(sshd.host_key.split()[1])
    fingerprint = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert f"its host key changed: it offers ssh-ed25519 SHA256:{fingerprint}, " in message
    assert f"not the key recorded in {known}" in message and "ssh-keygen -R" in message
    assert known.read_text() == recorded  # left as it was


def test_no_accepts_any_key_and_records_none(sshd, home, tmp_path):
    unknown = home / "absent_known_hosts"
    with connect(sshd, "no", unknown) as host:
        assert host.run("echo ok").stdout == b"ok\n"
    assert not unknown.exists()
    changed = home / "known_hosts"
    recorded = sshd.known_line(keygen(tmp_path / "other_host_key"))
    changed.write_text(recorded)
    with connect(sshd, "no", changed) as host:
        assert host.run("echo ok").stdout == b"ok\n"
    assert changed.read_text() == recorded


def test_default_known_hosts_is_the_users(sshd, home):
    data = sshd.host_data("accept-new", home / "unused")
    del data["ssh_known_hosts_file"]
    with SshHost("test-host", data) as host:
        assert host.run("true").returncode == 0
    assert (home / ".ssh" / "known_hosts").read_text() == sshd.known_line()


def test_no_ssh_or_fabric_configuration_file_is_read(sshd, home):
    """A ProxyCommand in ~/.ssh/config, a gateway in ~/.fabric.yaml: neither runs."""
    marker = home / "config-was-read"
    (home / ".ssh" / "config").write_text(
        f"Host *\n    ProxyCommand sh -c 'touch {marker}; exit 1'\n    Port 9\n"
    )
    (home / ".fabric.yaml").write_text(f"gateway: \"sh -c 'touch {marker}; exit 1'\"\nport: 9\n")
    with connect(sshd, "accept-new", home / "known_hosts") as host:
        assert host.run("echo ok").stdout == b"ok\n"
    assert not marker.exists()


# --- commands --------------------------------------------------------------------------------


def test_bytes_in_and_out_with_status_and_stderr(sshd, home):
    payload = hashlib.sha256(b"seed").digest() * 40000  # 1.28 MB of binary, every byte value
    with connect(sshd, "accept-new", home / "known_hosts") as host:
        done = host.run("cat; printf 'err\\n' >&2; exit 3", payload)
        assert (done.returncode, done.stdout, done.stderr) == (3, payload, b"err\n")
        # Large stderr while stdin is still being written: no stream waits for another.
        done = host.run("head -c 3000000 /dev/zero >&2; cat | wc -c", payload)
        assert (done.returncode, done.stdout.strip(), len(done.stderr)) == (
            0, str(len(payload)).encode(), 3000000
        )  # fmt: skip
        assert host.run("test -t 0 || echo no-tty").stdout == b"no-tty\n"


def test_sudo_wraps_the_command_when_the_host_data_says_so(sshd, home):
    args = sshd.root / "sudo.args"
    args.unlink(missing_ok=True)
    with connect(sshd, "accept-new", home / "known_hosts") as host:
        assert host.run("printf '%s' \"$1\" x", b"").returncode == 0
        assert not args.exists()
    with connect(sshd, "accept-new", home / "known_hosts", _sudo=True) as host:
        done = host.run('cat; echo "it\'s $((1 + 1))"', b"in\n")
        assert (done.returncode, done.stdout) == (0, b"in\nit's 2\n")
    assert args.read_text() == '-n sh -c cat; echo "it\'s $((1 + 1))"\n'


def test_local_runner_has_the_same_interface():
    done = LocalRunner().run("cat; echo e >&2; exit 4", b"\x00\xff")
    assert (done.returncode, done.stdout, done.stderr) == (4, b"\x00\xff", b"e\n")


# --- what an operator sees when it fails ------------------------------------------------------


def test_nothing_listening(home):
    port = free_port()
    data = {
        "ssh_hostname": "127.0.0.1",
        "ssh_user": "someone",
        "ssh_port": port,
        "ssh_strict_host_key_checking": "accept-new",
        "ssh_known_hosts_file": str(home / "known_hosts"),
        "ssh_connect_timeout": 5,
    }
    with pytest.raises(SshError) as refused:
        SshHost("lab-repository", data)
    message = str(refused.value)
    assert message.startswith(
        f"cannot connect to lab-repository (127.0.0.1:{port}) over SSH as someone: "
    )
    assert "check the address and port in the inventory and that sshd runs" in message


def test_a_key_the_host_does_not_know(sshd, home, tmp_path):
    keygen(tmp_path / "stranger")
    data = sshd.host_data("accept-new", home / "known_hosts", ssh_key=str(tmp_path / "stranger"))
    with pytest.raises(SshError) as refused:
        SshHost("test-host", data)
    message = str(refused.value)
    assert f"test-host (127.0.0.1:{sshd.port}) over SSH as {sshd.user}: authentication failed" in (
        message
    )
    assert f"ssh_key ({tmp_path / 'stranger'})" in message


def test_an_unknown_policy_is_refused_before_connecting(home):
    with pytest.raises(SshError, match="use one of yes, accept-new, no"):
        SshHost("h", {"ssh_hostname": "127.0.0.1", "ssh_strict_host_key_checking": "ask"})


def test_a_closed_connection_says_so(sshd, home):
    host = connect(sshd, "accept-new", home / "known_hosts")
    host.close()
    with pytest.raises(SshError, match="the SSH connection to test-host is closed"):
        host.run("true")


def test_charts_publish_through_ssh(sshd, home, tmp_path):
    """The chart store's scripts and tar stream over a real connection, as `kubi charts
    publish` sends them (the same checks run locally in test_charts)."""
    from kubi import charts
    from tests.unit.test_charts import make_chart

    folder = tmp_path / "charts"
    folder.mkdir()
    (folder / "index.yaml").write_text(charts.EMPTY_INDEX)
    with connect(sshd, "accept-new", home / "known_hosts") as host:
        store = charts.ChartStore(host, str(folder))
        result = charts.publish(make_chart(tmp_path / "src"), store)
        assert (result.outcome, result.charts) == ("published", 1)
        again = charts.publish(make_chart(tmp_path / "again"), store)
        assert again.outcome == "unchanged"
    published = (folder / "demo-0.1.0.tgz").read_bytes()
    assert published[:2] == b"\x1f\x8b"  # the gzip archive arrived intact
    assert "demo-0.1.0.tgz" in (folder / "index.yaml").read_text()


def test_without_a_policy_an_unknown_host_key_is_refused(sshd, tmp_path):
    """The same default as the config's: strict. Nothing is recorded on the way."""
    known = tmp_path / "known_hosts"
    data = sshd.host_data("yes", known)
    del data["ssh_strict_host_key_checking"]
    with pytest.raises(SshError, match="strict_host_key_checking is yes"):
        SshHost("h", data).run("true")
    assert not known.exists()


def test_a_forward_carries_many_connections_and_large_answers(sshd, home):
    """`ssh -L` as kubi does it for the API tunnel: a local port, listening before the block
    starts, to a server as the host sees it (here the same machine's 127.0.0.1)."""
    import http.server
    import threading
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    body = bytes(range(256)) * 4096  # 1 MiB

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    known = home / "known_hosts"
    known.write_text(sshd.known_line())
    try:
        with (
            connect(sshd, "yes", known) as host,
            host.forward("127.0.0.1", server.server_address[1]) as port,
        ):

            def fetch(_):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=20) as answer:
                    return answer.read()

            with ThreadPoolExecutor(8) as pool:
                assert all(got == body for got in pool.map(fetch, range(16)))
        with pytest.raises(OSError):  # the block is over: nothing listens there any more
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        server.shutdown()


def test_a_forward_to_nothing_closes_that_connection_and_ends_at_once(sshd, home):
    import time

    known = home / "known_hosts"
    known.write_text(sshd.known_line())
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        nothing = probe.getsockname()[1]
    start = time.monotonic()
    with (
        connect(sshd, "yes", known) as host,
        host.forward("127.0.0.1", nothing) as port,
        socket.create_connection(("127.0.0.1", port), timeout=20) as client,
    ):
        assert client.recv(1) == b""  # the host refused the channel: closed, not hung
    assert time.monotonic() - start < 10

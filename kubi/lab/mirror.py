"""The lab's package mirror server: the mirror root (`kubi.lab.kubernetes.mirror_root`), read
only, over HTTP, to the lab hosts.

It follows the lab's apt-cacher-ng (`machine.ensure_proxy` / `stop_proxy`): its own process,
started by `kubi lab up` once the bridge exists and stopped by `kubi lab down`, its log and
pid file in `plan.LAB_MIRROR_RUN_DIR`, its port `plan.LAB_MIRROR_PORT`. It listens on
127.0.0.1 and the bridge address only, and answers with files under the mirror root only:
started as root, it binds, then shuts itself into the mirror root (chroot) and runs as
`nobody`. Directories are not listed.

The process is `python -m kubi.lab.mirror serve ROOT PORT ADDRESS...`.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import mimetypes
import os
import pwd
import select
import socketserver
import subprocess
import sys
import threading
from pathlib import Path

from kubi.lab import machine, plan
from kubi.lab.plan import GATEWAY, LAB_MIRROR_PORT, LabError, Log

# The only addresses it may listen on: the machine's loopback and the lab bridge's own.
ALLOWED_ADDRESSES = ("127.0.0.1", GATEWAY)
SERVE = "serve"
# The pipe on which the server says it listens (a socket seen listening on the port could
# be another program's).
READY_ENV = "KUBI_LAB_MIRROR_READY_FD"
START_TIMEOUT = 15.0


class _Handler(http.server.SimpleHTTPRequestHandler):
    server_version = "kubi-lab-mirror"

    def list_directory(self, path):  # noqa: ARG002 - no listing: apt asks for files only
        self.send_error(404, "no directory listing")
        return None

    def do_POST(self):  # anything but GET and HEAD: not a file server's business
        self.send_error(405)

    do_PUT = do_DELETE = do_PATCH = do_POST


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # every lab host may ask at once

    def server_bind(self):
        # HTTPServer.server_bind asks DNS for the address's name (socket.getfqdn): never here.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]


def serve(root: Path, port: int, addresses: list[str]) -> None:
    """Serve `root` on each address (and nothing else) until killed. As root: bind first, then
    chroot into `root` and become `nobody`, so that no request can reach another file."""
    refused = [a for a in addresses if a not in ALLOWED_ADDRESSES]
    if refused or not addresses:
        raise SystemExit(f"kubi-lab-mirror: refusing to listen on {refused or 'no address'}")
    confined = os.geteuid() == 0
    handler = functools.partial(_Handler, directory="/" if confined else str(root))
    # Bound now, listening only once confined: a listening socket means a confined server.
    servers = [_Server((address, port), handler, bind_and_activate=False) for address in addresses]
    for server in servers:
        server.server_bind()
    # What a request needs from outside the mirror root is loaded now: the MIME types file
    # and the codecs of headers and pages (encodings are imported on first use).
    mimetypes.init()
    for codec in ("latin-1", "utf-8", "ascii", "idna"):
        "".encode(codec)
    if confined:
        confine(root)
    for server in servers:
        server.server_activate()
    print(f"kubi-lab-mirror: serving {root} on {', '.join(addresses)} port {port}", flush=True)
    say_ready()
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()


# --- the process, from `kubi lab up` / `down` ------------------------------------------------


def serving(port: int = LAB_MIRROR_PORT, addresses: tuple[str, ...] = ALLOWED_ADDRESSES) -> bool:
    sockets = plan.listening(machine.run("ss", "-Hltn").stdout)
    return {f"{address}:{port}" for address in addresses} <= sockets


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def server_pid(run_dir: Path = plan.LAB_MIRROR_RUN_DIR, module: str = __name__) -> int | None:
    """The server's pid, only if that process is `module`'s server (the pid file may be
    stale, and the number reused). Also for the lab's other server, `kubi.lab.dns`."""
    try:
        pid = int((run_dir / "pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if _cmdline(pid)[1:4] == ["-m", module, SERVE]:
        return pid
    return None


def stop(run_dir: Path = plan.LAB_MIRROR_RUN_DIR, module: str = __name__) -> None:
    """Stop the lab's mirror server (or `module`'s), and no other process."""
    pid = server_pid(run_dir, module)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 15)
        machine.wait(lambda: not _alive(pid), 10, 0.1)
    (run_dir / "pid").unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """Whether `pid` still runs; a child of this process that ended is reaped (`up` started
    the server from this process: a test does)."""
    for _ in range(2):  # again once it is seen ended: it may have ended just after the first
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            return False
        if state != "Z":
            return True
    return False


def start(
    root: Path,
    log: Log,
    run_dir: Path = plan.LAB_MIRROR_RUN_DIR,
    port: int = LAB_MIRROR_PORT,
    addresses: tuple[str, ...] = ALLOWED_ADDRESSES,
) -> None:
    """The mirror server serving `root`, started unless it already serves it."""
    pid = server_pid(run_dir)
    same = pid is not None and _cmdline(pid)[4:6] == [str(root), str(port)]
    if same and serving(port, addresses):
        return
    if not spawn(__name__, [str(root), str(port), *addresses], run_dir) or not serving(
        port, addresses
    ):
        stop(run_dir)
        raise LabError(
            f"the lab's mirror server does not listen on {' and '.join(addresses)} port {port} "
            f"(is the port taken?); see {run_dir / 'log'}."
        )
    log(f"lab: package mirror serving {root} on {' and '.join(addresses)} port {port}")


def spawn(module: str, args: list[str], run_dir: Path) -> bool:
    """Start `python -m module serve ARGS...` in its own session, its output in
    `run_dir`/log and its pid in `run_dir`/pid (a running one is stopped first); whether it
    said it is ready (every socket bound and confined) within START_TIMEOUT."""
    stop(run_dir, module)
    run_dir.mkdir(parents=True, exist_ok=True)
    read_end, write_end = os.pipe()
    try:
        with open(run_dir / "log", "ab") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", module, SERVE, *args],
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True, cwd="/", pass_fds=(write_end,),
                env={"PATH": plan.PATH_ENV, "LC_ALL": "C", READY_ENV: str(write_end)},
            )  # fmt: skip
    finally:
        os.close(write_end)
    (run_dir / "pid").write_text(f"{process.pid}\n")
    with os.fdopen(read_end, "rb") as ready:
        # a line once it listens; the end of the pipe at once if it ends before
        said = ready.readline() if select.select([ready], [], [], START_TIMEOUT)[0] else b""
    return said == b"ready\n"


def confine(root: Path) -> None:
    """A server started as root, once its sockets are bound: shut into `root`, as nobody."""
    nobody = pwd.getpwnam("nobody")
    os.chroot(root)
    os.chdir("/")
    os.setgroups([])
    os.setgid(nobody.pw_gid)
    os.setuid(nobody.pw_uid)


def say_ready() -> None:
    """In a server started by `spawn`: tell it that every socket is ours and listens."""
    if READY_ENV in os.environ:
        ready = int(os.environ[READY_ENV])
        os.write(ready, b"ready\n")
        os.close(ready)


if __name__ == "__main__":
    if len(sys.argv) < 5 or sys.argv[1] != SERVE:
        raise SystemExit("usage: python -m kubi.lab.mirror serve ROOT PORT ADDRESS...")
    serve(Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4:])

"""The raw nginx template and the validate-then-reload mechanism, with a real nginx.

A real nginx runs from a temporary prefix on 127.0.0.1; `kubi.ops.file` changes its sites
exactly as it does on a host (same shell, same `nginx -t` check), so these tests prove that
an invalid site is refused with nginx's own message and the running nginx keeps serving.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

import kubi.nginx
from facts.nginx import NginxState
from kubi import ops
from kubi.templates import render

from .localrun import CommandFailed, LocalHost, run_op

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MODULES = Path("/etc/nginx/modules-enabled")
pytestmark = pytest.mark.skipif(
    not (Path(NGINX).exists() and (MODULES / "50-mod-stream.conf").exists()),
    reason="needs nginx and libnginx-mod-stream (apt-get install nginx libnginx-mod-stream)",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def site(port: int, body: str) -> str:
    return (
        f"server {{\n    listen 127.0.0.1:{port};\n    location / {{ return 200 '{body}'; }}\n}}\n"
    )


class Nginx:
    def __init__(self, root: Path):
        self.root = root
        self.conf = root / "nginx.conf"
        for sub in ("conf.d", "sites.conf.d", "streams.conf.d", "logs"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy("/etc/nginx/mime.types", root / "mime.types")
        self.text = render(
            "nginx",
            "nginx.conf",
            nginx_dir=root,
            modules_dir=MODULES,
            log_dir=root / "logs",
            pid_file=root / "nginx.pid",
            worker_connections=64,
            server_tokens=False,
        )
        self.conf.write_text(self.text)
        self.check = f"{NGINX} -t -c {self.conf}"
        self.reload = f"{NGINX} -c {self.conf} -s reload"

    def test(self) -> subprocess.CompletedProcess:
        return subprocess.run(self.check.split(), capture_output=True, text=True)

    def put_site(self, name: str, content: str | None, **kwargs) -> list[str]:
        return run_op(
            ops.file,
            path=str(self.root / "sites.conf.d" / f"{name}.conf"),
            content=content,
            check=self.check,
            reload=self.reload,
            **kwargs,
        )


@pytest.fixture
def nginx(tmp_path):
    server = Nginx(tmp_path)
    yield server
    if (tmp_path / "nginx.pid").exists():
        subprocess.run([NGINX, "-c", str(server.conf), "-s", "quit"], check=False)


def get(port: int, expect: str | None = None, timeout: float = 5.0) -> str:
    """GET / on loopback; with `expect`, wait (bounded) for a reload to take effect."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as answer:
                body = answer.read().decode()
        except OSError:
            body = ""
        if expect is None or body == expect or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_raw_nginx_config_is_valid_and_empty(nginx):
    result = nginx.test()
    assert result.returncode == 0, result.stderr
    text = nginx.conf.read_text()
    assert "server_tokens off;" in text
    assert "server {" not in text  # installed empty: no default site


def test_streams_are_included_inside_a_stream_block(nginx):
    stream = nginx.root / "streams.conf.d" / "api.conf"
    stream.write_text(
        "upstream api { server 127.0.0.1:6443; }\n"
        "server { listen 127.0.0.1:16443; proxy_pass api; }\n"
    )
    assert nginx.test().returncode == 0
    # An http-only directive is refused there, which proves the stream {} context.
    stream.write_text("server { listen 127.0.0.1:16443; location / { return 200; } }\n")
    result = nginx.test()
    assert result.returncode != 0
    assert '"location" directive is not allowed here' in result.stderr


def test_site_is_added_served_and_idempotent(nginx):
    port = free_port()
    subprocess.run([NGINX, "-c", str(nginx.conf)], check=True)
    ran = nginx.put_site("app", site(port, "v1"))
    assert ran[0].startswith("upload ") and len(ran) == 2
    assert get(port, "v1") == "v1"
    assert nginx.put_site("app", site(port, "v1")) == []  # converged: no command at all


def test_invalid_change_is_refused_and_nginx_keeps_serving(nginx):
    port = free_port()
    subprocess.run([NGINX, "-c", str(nginx.conf)], check=True)
    nginx.put_site("app", site(port, "v1"))
    assert get(port, "v1") == "v1"
    path = nginx.root / "sites.conf.d" / "app.conf"
    before = path.read_text()

    with pytest.raises(CommandFailed) as failed:
        nginx.put_site("app", site(port, "v2").replace("return 200", "retrun 200"))
    assert 'unknown directive "retrun"' in failed.value.stderr  # nginx's own message
    assert "refused the change; the previous configuration is kept" in failed.value.stderr
    assert path.read_text() == before
    assert get(port) == "v1"
    assert sorted(p.name for p in path.parent.iterdir()) == ["app.conf"]  # no temp files left


def test_invalid_new_site_is_removed_again(nginx):
    port = free_port()
    subprocess.run([NGINX, "-c", str(nginx.conf)], check=True)
    nginx.put_site("app", site(port, "v1"))
    with pytest.raises(CommandFailed):
        nginx.put_site("other", "server { listen 127.0.0.1:1; bogus; }\n")
    assert not (nginx.root / "sites.conf.d" / "other.conf").exists()
    assert nginx.test().returncode == 0
    assert get(port) == "v1"


def test_site_removal_and_permission_drift(nginx):
    port = free_port()
    subprocess.run([NGINX, "-c", str(nginx.conf)], check=True)
    nginx.put_site("app", site(port, "v1"))
    path = nginx.root / "sites.conf.d" / "app.conf"
    path.chmod(0o600)
    q = shlex.quote(str(path))
    [fix] = nginx.put_site("app", site(port, "v1"))  # behind the guard against links (ops.file)
    assert shlex.split(fix)[2].endswith(f"; chmod 644 {q} && chown root:root {q}")
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    nginx.put_site("app", None)
    assert not path.exists()
    assert get(port, expect="") == ""  # the site is gone once the reload took effect
    assert nginx.put_site("app", None) == []


def test_state_fact_names_the_file_nginx_refuses(nginx, monkeypatch):
    """A stray file kubi does not own: the fact names it, and the deploy's line says so."""
    monkeypatch.setenv("PATH", f"{Path(NGINX).parent}:{os.environ['PATH']}")
    local = LocalHost()
    state = local.get_fact(NginxState, conf=str(nginx.conf))
    assert (state["installed"], state["refused"]) == (True, None)
    for folder in ("streams.conf.d", "sites.conf.d"):
        stray = nginx.root / folder / "x.conf"
        stray.write_text("garbage {\n")
        refused = local.get_fact(NginxState, conf=str(nginx.conf))["refused"]
        assert refused == {"file": str(stray), "line": 1, "error": 'unknown directive "garbage"'}
        failed = subprocess.run(["sh", "-c", kubi.nginx.refused(refused)], capture_output=True)
        assert failed.returncode == 1
        assert failed.stderr.decode() == (
            f'kubi: nginx refuses {stray}:1 (unknown directive "garbage"), so every reload '
            "would fail: fix or remove that file, then run again\n"
        )
        stray.unlink()
    assert local.get_fact(NginxState, conf=str(nginx.conf))["refused"] is None
    assert local.fact_calls == ["facts.nginx.NginxState"] * 4  # one round trip each


def test_refused_first_nginx_conf_is_removed_and_a_packaged_one_kept(nginx):
    """deploys/nginx.py writes nginx.conf with the nginx -t check: when nginx refuses the
    whole (here for a stray stream file), the message says what became of nginx.conf."""
    (nginx.root / "streams.conf.d" / "x.conf").write_text("garbage {\n")
    write = {"path": str(nginx.conf), "content": nginx.text, "check": nginx.check}

    nginx.conf.unlink()  # no nginx.conf before kubi's first: it is removed again
    with pytest.raises(CommandFailed) as failed:
        run_op(ops.file, **write)
    assert 'unknown directive "garbage"' in failed.value.stderr  # nginx's own message
    assert failed.value.stderr.endswith(
        "refused the change; the new file was removed again: nothing was there before\n"
    )
    assert "previous configuration is kept" not in failed.value.stderr
    assert not any(p.name.startswith("nginx.conf") for p in nginx.root.iterdir())

    # The package's own nginx.conf (which includes no streams) is there: it is put back.
    packaged = f"events {{}}\nhttp {{ include {nginx.root}/sites.conf.d/*.conf; }}\n"
    nginx.conf.write_text(packaged)
    nginx.conf.chmod(0o644)
    assert nginx.test().returncode == 0
    with pytest.raises(CommandFailed) as failed:
        run_op(ops.file, **write)
    assert failed.value.stderr.endswith("refused the change; the previous configuration is kept\n")
    assert nginx.conf.read_text() == packaged and nginx.test().returncode == 0
    assert [p.name for p in nginx.root.iterdir() if p.name.startswith("nginx.conf")] == [
        "nginx.conf"
    ]

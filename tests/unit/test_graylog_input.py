"""Contract of the GELF input step against a fake Graylog REST API on 127.0.0.1.

No Graylog here: a small HTTP server in a thread answers like Graylog's API (canned
answers) and records every request. The input step runs for real, exactly as the deploy
runs it on the output host: the same file (kubi/graylog_api.py, uploaded verbatim), the same
command line, the same spec and netrc files, with the system's python3 (standard library
only). The fact the deploy reads while planning runs its real curl command against it too.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from facts.graylog import GraylogInputs
from kubi import graylog, graylog_api

from .localrun import LocalHost

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-Admin-pw_0123456789abcdef"
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else shutil.which("python3")
GELF_PORT = 12201


class FakeGraylog:
    """Records requests; answers lbstatus from a script, inputs from its own list."""

    def __init__(self):
        self.requests: list[dict] = []
        self.inputs: list[dict] = []
        self.lbstatus = [(200, "ALIVE")]  # the last entry repeats
        self.password = PASSWORD
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _answer(self, status: int, body) -> None:
                raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                kind = "text/plain" if isinstance(body, str) else "application/json"
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                fake.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": json.loads(raw) if raw else None,
                    }
                )
                status, body = fake.route(self.command, self.path, self.headers, raw)
                self._answer(status, body)

            do_GET = do_POST = do_PUT = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def route(self, method, path, headers, raw):
        if path == "/api/system/lbstatus":
            status, text = self.lbstatus.pop(0) if len(self.lbstatus) > 1 else self.lbstatus[0]
            return status, text
        expected = "Basic " + base64.b64encode(f"admin:{self.password}".encode()).decode()
        if headers.get("Authorization") != expected:
            return 401, {"type": "ApiError", "message": "Not authorized"}
        if method in ("POST", "PUT") and headers.get("X-Requested-By") is None:
            return 400, {"type": "ApiError", "message": "CSRF header missing"}
        if method == "GET" and path == "/api/system/inputs":
            return 200, {"inputs": self.inputs, "total": len(self.inputs)}
        if method == "POST" and path == "/api/system/inputs":
            body = json.loads(raw)
            self.inputs.append(_stored("new-input-id", body))
            return 201, {"id": "new-input-id"}
        if method == "PUT" and path.startswith("/api/system/inputs/"):
            input_id = path.rsplit("/", 1)[1]
            body = json.loads(raw)
            self.inputs = [i for i in self.inputs if i["id"] != input_id]
            self.inputs.append(_stored(input_id, body))
            return 201, {"id": input_id}
        return 404, {"type": "ApiError", "message": f"no route {method} {path}"}

    def calls(self, skip_lbstatus: bool = True) -> list[tuple[str, str]]:
        return [
            (r["method"], r["path"])
            for r in self.requests
            if not (skip_lbstatus and r["path"].endswith("/lbstatus"))
        ]


def _stored(input_id: str, body: dict) -> dict:
    """What Graylog lists for an input: the request plus defaults it fills in."""
    attributes = {**body["configuration"], "decompress_size_limit": 8388608}
    return {
        "id": input_id,
        "title": body["title"],
        "type": body["type"],
        "global": body["global"],
        "node": None,
        "attributes": attributes,
        "creator_user_id": "admin",
        "created_at": "2026-01-01T00:00:00.000Z",
        "static_fields": {},
        "content_pack": None,
    }


@pytest.fixture
def fake():
    server = FakeGraylog()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def host_files(tmp_path, fake):
    """The three files the deploy uploads, at temporary paths, pointing at the fake."""
    script = tmp_path / "lib" / "graylog.py"
    script.parent.mkdir()
    shutil.copy(ROOT / "kubi" / "graylog_api.py", script)  # the deploy uploads this very file
    spec = tmp_path / "input.json"
    spec.write_text(json.dumps(graylog.input_spec(fake.port, GELF_PORT)))
    netrc = tmp_path / "api.netrc"
    netrc.write_text(f"machine 127.0.0.1 login admin password {PASSWORD}\n")
    netrc.chmod(0o600)
    return {"script": str(script), "spec": str(spec), "credentials": str(netrc)}


def ensure(host_files, **spec_changes) -> subprocess.CompletedProcess:
    """Run the deploy's command, as the host runs it (its python3, no kubi installed)."""
    if spec_changes:
        path = Path(host_files["spec"])
        path.write_text(json.dumps({**json.loads(path.read_text()), **spec_changes}))
    command = graylog.ensure_input_command(**host_files)
    env = {"PATH": f"{Path(PYTHON).parent}:/usr/bin:/bin", "http_proxy": "http://127.0.0.1:9"}
    return subprocess.run(
        ["sh", "-c", command], capture_output=True, text=True, timeout=60, env=env, cwd="/"
    )


WANTED = graylog.gelf_input(GELF_PORT)


def test_creates_the_input_when_absent(fake, host_files):
    result = ensure(host_files)
    assert result.returncode == 0, result.stderr
    assert fake.calls() == [("GET", "/api/system/inputs"), ("POST", "/api/system/inputs")]
    post = fake.requests[-1]
    assert post["body"] == {
        "title": "kubi GELF TCP",
        "type": "org.graylog2.inputs.gelf.tcp.GELFTCPInput",
        "global": True,
        "configuration": {
            "bind_address": "0.0.0.0",
            "port": GELF_PORT,
            "recv_buffer_size": 1048576,
            "number_worker_threads": 2,
            "tls_enable": False,
            "tcp_keepalive": False,
            "use_null_delimiter": True,
            "max_message_size": 2097152,
        },
    }
    headers = post["headers"]
    assert headers["x-requested-by"] == "kubi"
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "application/json"
    assert headers["authorization"].startswith("Basic ")
    assert result.stdout.strip() == (
        f"kubi: input 'kubi GELF TCP' (GELF TCP {GELF_PORT}) created, id new-input-id"
    )
    assert PASSWORD not in result.stdout + result.stderr


def test_nothing_when_present_and_equal(fake, host_files):
    fake.inputs = [_stored("abc123", graylog_api.input_request(("create", None), WANTED)[2])]
    result = ensure(host_files)
    assert result.returncode == 0, result.stderr
    assert fake.calls() == [("GET", "/api/system/inputs")]  # no change at all
    assert "already as wanted" in result.stdout


def test_updates_when_different(fake, host_files):
    other = graylog.gelf_input(12999)
    other["configuration"]["use_null_delimiter"] = False
    fake.inputs = [
        _stored("other", {**graylog.gelf_input(5555), "title": "someone else's input"}),
        _stored("abc123", graylog_api.input_request(("create", None), other)[2]),
    ]
    result = ensure(host_files)
    assert result.returncode == 0, result.stderr
    assert fake.calls() == [("GET", "/api/system/inputs"), ("PUT", "/api/system/inputs/abc123")]
    put = fake.requests[-1]
    assert put["body"]["configuration"]["port"] == GELF_PORT
    assert put["body"]["configuration"]["use_null_delimiter"] is True
    assert put["headers"]["x-requested-by"] == "kubi"
    assert put["headers"]["content-type"] == "application/json"
    assert "updated, id abc123" in result.stdout
    # The other input is left alone.
    assert any(i["id"] == "other" and i["attributes"]["port"] == 5555 for i in fake.inputs)
    # A second run is a no-op: the fake now lists what kubi wants.
    fake.requests.clear()
    assert ensure(host_files).returncode == 0
    assert fake.calls() == [("GET", "/api/system/inputs")]


def test_waits_for_graylog_then_proceeds(fake, host_files):
    fake.lbstatus = [(503, "DEAD"), (503, "DEAD"), (200, "ALIVE")]
    result = ensure(host_files, wait_seconds=30)
    assert result.returncode == 0, result.stderr
    lb = [r for r in fake.requests if r["path"] == "/api/system/lbstatus"]
    assert len(lb) == 3
    assert fake.calls() == [("GET", "/api/system/inputs"), ("POST", "/api/system/inputs")]


def test_bounded_wait_gives_a_clear_timeout(fake, host_files):
    fake.lbstatus = [(503, "DEAD")]
    result = ensure(host_files, wait_seconds=3)
    assert result.returncode == 1
    api = f"http://127.0.0.1:{fake.port}/api/system/lbstatus"
    assert result.stderr.strip() == (
        f"kubi: Graylog did not become ready within 3 s at {api} (last: HTTP 503 DEAD); "
        "see `journalctl -u graylog-server` and /var/log/graylog-server/server.log on this host"
    )
    assert fake.calls() == []  # nothing attempted before Graylog answers


def test_no_graylog_at_all_times_out_naming_the_cause(tmp_path, host_files):
    spec = Path(host_files["spec"])
    data = json.loads(spec.read_text())
    data["api"] = "http://127.0.0.1:9/api"  # discard port: nothing listens
    data["wait_seconds"] = 1
    spec.write_text(json.dumps(data))
    result = ensure(host_files)
    assert result.returncode == 1
    assert "did not become ready within 1 s" in result.stderr
    assert "Connection refused" in result.stderr


def test_bad_credentials_give_a_clear_error_without_the_password(fake, host_files):
    fake.password = "the-real-one-is-different"
    result = ensure(host_files)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "kubi: Graylog refused the credentials of user 'admin' (HTTP 401 on GET "
        f"/system/inputs): the password in {host_files['credentials']} does not match "
        "root_password_sha2 in /etc/graylog/server/server.conf; run the graylog deploy "
        "again (it writes both from the secrets store)"
    )
    assert PASSWORD not in result.stdout + result.stderr
    assert fake.calls() == [("GET", "/api/system/inputs")]


def test_other_api_errors_are_reported_with_graylogs_message(fake, host_files):
    def refuse(method, path, headers, raw, original=fake.route):
        if method == "POST":
            return 400, {"type": "ApiError", "message": "Missing configuration field port"}
        return original(method, path, headers, raw)

    fake.route = refuse
    result = ensure(host_files)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "kubi: Graylog answered HTTP 400 to POST /system/inputs: Missing configuration field port"
    )


def test_plan_time_fact_lists_inputs_with_the_netrc_file(fake, host_files):
    fake.inputs = [_stored("abc123", graylog_api.input_request(("create", None), WANTED)[2])]
    fact = GraylogInputs()
    command = fact.command(api=graylog.api_base(fake.port), netrc=host_files["credentials"])
    assert PASSWORD not in command
    inputs = LocalHost().get_fact(
        GraylogInputs, api=graylog.api_base(fake.port), netrc=host_files["credentials"]
    )
    assert [i["id"] for i in inputs] == ["abc123"]
    assert graylog_api.input_action(inputs, WANTED) is None
    request = fake.requests[-1]
    assert (request["method"], request["path"]) == ("GET", "/api/system/inputs")
    assert request["headers"]["x-requested-by"] == "kubi"
    assert request["headers"]["authorization"].startswith("Basic ")


def test_plan_time_fact_is_none_when_graylog_cannot_answer(fake, host_files, tmp_path):
    local = LocalHost()
    # No credentials yet (fresh host): no request at all.
    missing = str(tmp_path / "absent.netrc")
    assert local.get_fact(GraylogInputs, api=graylog.api_base(fake.port), netrc=missing) is None
    assert fake.requests == []
    # Nothing listening.
    assert (
        local.get_fact(GraylogInputs, api="http://127.0.0.1:9/api", netrc=host_files["credentials"])
        is None
    )
    # Wrong credentials: 401 is "cannot tell", so the deploy plans the input step (which
    # then reports the clear error above).
    fake.password = "different"
    assert (
        local.get_fact(
            GraylogInputs, api=graylog.api_base(fake.port), netrc=host_files["credentials"]
        )
        is None
    )


def test_script_imports_only_the_standard_library():
    """Every import in the uploaded file, even one inside a function, is the standard
    library's: the host has no kubi and no third-party package."""
    tree = ast.parse((ROOT / "kubi" / "graylog_api.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import needs the kubi package"
            imported.add((node.module or "").split(".")[0])
    assert {"json", "urllib"} <= imported  # the walk sees the file's imports
    assert imported - {"__future__"} <= sys.stdlib_module_names, imported


def test_script_runs_without_site_packages(host_files):
    """The uploaded file runs with the system's python3 and no site-packages at all (-S),
    from a folder holding nothing else of kubi (-I: not even its own folder on the path)."""
    result = subprocess.run(
        [PYTHON, "-S", "-I", host_files["script"]],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin")},
        cwd="/",
    )
    assert result.returncode == 2, result.stderr  # imported fine, then the usage line
    assert result.stderr == "usage: graylog.py ensure-input SPEC.json NETRC\n"

"""The log stack's pure parts: apt sources per version, rendered configuration, the input
diff, and the two nginx sites checked by a real nginx (temporary prefix, 127.0.0.1 only)."""

from __future__ import annotations

import copy
import hashlib
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kubi import aptsource, graylog, graylog_api
from kubi.config import Versions, validate
from kubi.config.matrices import log_stack
from tests.plans.conftest import DESCRIPTION, with_monitoring  # noqa: F401  (fixture)
from tests.plans.harness import plan, uploads
from tests.plans.test_graylog_plan import fresh_facts

from .test_nginx_mechanism import MODULES, NGINX, Nginx

# --- repositories and the version matrix ---------------------------------------------------


@pytest.mark.parametrize("release", sorted(log_stack().graylog))
def test_every_matrix_release_has_repositories(release):
    newest = log_stack().graylog[release].opensearch.high
    versions = Versions(graylog=release, opensearch=f"{newest}.0", mongodb="7.0")
    by_name = {r.name: r for r in graylog.apt_sources(versions)}
    assert list(by_name) == ["mongodb", "opensearch", "graylog"]  # install order
    assert by_name["graylog"].url == "https://downloads.graylog.org/repo/debian"
    assert (by_name["graylog"].suite, by_name["graylog"].components) == ("stable", release)
    assert by_name["graylog"].pins == {"graylog-server": f"{release}.*"}
    assert by_name["opensearch"].url == (
        "https://artifacts.opensearch.org/releases/bundle/opensearch/2.x/apt"
    )
    assert by_name["opensearch"].pins == {"opensearch": f"{newest}.0"}
    assert by_name["mongodb"].suite == "bookworm/mongodb-org/7.0"
    assert by_name["mongodb"].key_url == "https://pgp.mongodb.com/server-7.0.asc"
    for repo in by_name.values():
        assert len(repo.fingerprint) == 40 and repo.fingerprint == repo.fingerprint.upper()
        assert repo.keyring == f"/etc/apt/keyrings/kubi-{repo.name}.gpg"


def test_opensearch_major_picks_its_repository():
    versions = Versions(graylog="6.1", opensearch="1.3.19", mongodb="7.0")
    [opensearch] = [r for r in graylog.apt_sources(versions) if r.name == "opensearch"]
    assert opensearch.url.endswith("/opensearch/1.x/apt")


@pytest.mark.parametrize("mongodb", ["5.0", "6.0"])
def test_mongodb_without_bookworm_packages_is_refused(mongodb):
    # Refused by the config itself, before any connection.
    with pytest.raises(ValueError, match="MongoDB publishes packages for Debian bookworm from 7"):
        Versions(mongodb=mongodb)


def test_upstream_repositories_for_the_reachability_check():
    platform = validate(copy.deepcopy(DESCRIPTION))
    assert graylog.upstream_repositories(platform) == [
        (
            "mongodb",
            "https://repo.mongodb.org/apt/debian/dists/bookworm/mongodb-org/7.0/InRelease",
        ),
        (
            "opensearch",
            "https://artifacts.opensearch.org/releases/bundle/opensearch/2.x/apt/dists/stable/"
            "InRelease",
        ),
        ("graylog", "https://downloads.graylog.org/repo/debian/dists/stable/InRelease"),
    ]
    mirrored = validate({**DESCRIPTION, "graylog": {"apt_mirror": "http://m.plan.internal/a"}})
    assert graylog.upstream_repositories(mirrored)[2] == (
        "graylog",
        "http://m.plan.internal/a/downloads.graylog.org/repo/debian/dists/stable/InRelease",
    )


def test_upstream_hosts_for_allow_lists():
    assert graylog.upstream_hosts(Versions()) == [
        "repo.mongodb.org",
        "pgp.mongodb.com",
        "artifacts.opensearch.org",
        "downloads.graylog.org",
        "packages.graylog2.org",
    ]


def test_packages_to_install():
    repos = graylog.apt_sources(Versions())
    assert aptsource.packages_to_install(repos, {}) == [
        "mongodb-org-server",
        "opensearch",
        "graylog-server",
    ]
    installed = {
        "mongodb-org-server": ["7.0.14"],
        "opensearch": ["2.15.0"],
        "graylog-server": ["6.1.4-1"],
    }
    assert aptsource.packages_to_install(repos, installed) == []
    older = {**installed, "graylog-server": ["6.0.9-1"], "mongodb-org-server": ["6.0.3"]}
    assert aptsource.packages_to_install(repos, older) == ["mongodb-org-server", "graylog-server"]
    with pytest.raises(ValueError) as newer:
        aptsource.packages_to_install(repos, {**installed, "graylog-server": ["6.2.0-1"]})
    assert str(newer.value) == (
        "graylog-server 6.2.0-1 is installed, newer than the platform's pin 6.1.* (versions.*): "
        "kubi does not downgrade the log stack; set the version in the inventory to the "
        "installed one (within kubi/config/log_stack.toml)"
    )


def test_version_pins_say_why_in_graylogs_words():
    pins = aptsource.apt_preferences(graylog.apt_sources(Versions()))
    assert pins.startswith(
        "# Managed by kubi (graylog): the log stack stays at the versions of the platform\n"
        "# config (versions.graylog, versions.opensearch, versions.mongodb), whatever newer\n"
        "# the repositories offer. A newer version is a new row of "
        "kubi/config/log_stack.toml.\n\n"
        "Package: mongodb-org-server\nPin: version 7.0.*\nPin-Priority: 1001\n"
    )


def test_graylog_keeps_the_names_the_verify_suite_uses():
    # tests/verify imports it from kubi.graylog.
    assert graylog.input_action is graylog_api.input_action


# --- the input diff --------------------------------------------------------------------------

WANTED = graylog.gelf_input(12201)


def listed(input_id="a1", title="kubi GELF TCP", type_=graylog.GELF_TCP_TYPE, glob=True, **attrs):
    return {
        "id": input_id,
        "title": title,
        "type": type_,
        "global": glob,
        "attributes": {**WANTED["configuration"], "decompress_size_limit": 8388608, **attrs},
    }


@pytest.mark.parametrize(
    ("inputs", "action"),
    [
        ([], ("create", None)),
        ([listed(title="syslog")], ("create", None)),
        ([listed()], None),  # extra attributes Graylog adds are not kubi's business
        ([listed(port=12202)], ("update", "a1")),
        ([listed(use_null_delimiter=False)], ("update", "a1")),
        ([listed(glob=False)], ("update", "a1")),
        ([listed(type_="org.graylog2.inputs.gelf.udp.GELFUDPInput")], ("update", "a1")),
        ([listed(title="other", port=1), listed("b2")], None),
    ],
)
def test_input_action(inputs, action):
    assert graylog_api.input_action(inputs, WANTED) == action


def test_input_requests():
    assert graylog_api.input_request(("create", None), WANTED)[:2] == ("POST", "/system/inputs")
    method, path, body = graylog_api.input_request(("update", "a1"), WANTED)
    assert (method, path) == ("PUT", "/system/inputs/a1")
    assert body == {k: WANTED[k] for k in ("title", "type", "global", "configuration")}


# --- rendered configuration ----------------------------------------------------------------


@pytest.fixture
def written(tmp_path):
    description = copy.deepcopy(DESCRIPTION)
    description["secrets_dir"] = str(tmp_path / "secrets")
    description["seed"] = {"timezone": "Europe/Paris"}
    description["cockpit"] = {"port": 8443}
    description["graylog"] = {
        "graylog_heap": "3g",
        "opensearch_heap": "2g",
        "http_port": 9100,
        "gelf_tcp_port": 12301,
    }
    lines = plan("deploys/graylog.py", "out1", description, _facts(http_port=9100))
    return {
        "files": uploads(lines),
        "lines": lines,
        "admin": (tmp_path / "secrets/graylog-admin-password").read_text(),
        "password_secret": (tmp_path / "secrets/graylog-password-secret").read_text(),
    }


def _facts(http_port=9000):
    facts = fresh_facts()
    facts["facts.graylog.GraylogInputs"] = {
        f"api=http://127.0.0.1:{http_port}/api, netrc=/etc/kubi/graylog/api.netrc": None
    }
    return facts


def test_server_conf(written):
    conf = written["files"]["/etc/graylog/server/server.conf"]
    settings = dict(
        line.split(" = ", 1) for line in conf.splitlines() if line and not line.startswith("#")
    )
    assert settings["password_secret"] == written["password_secret"]
    assert len(settings["password_secret"]) >= 64
    assert settings["root_password_sha2"] == hashlib.sha256(written["admin"].encode()).hexdigest()
    assert settings["root_username"] == "admin"
    assert settings["http_bind_address"] == "127.0.0.1:9100"
    assert settings["http_external_uri"] == "http://graylog.localhost:8443/"
    assert settings["elasticsearch_hosts"] == "http://127.0.0.1:9200"
    assert settings["mongodb_uri"] == "mongodb://127.0.0.1:27017/graylog"
    assert settings["root_timezone"] == "Europe/Paris"
    assert settings["is_leader"] == "true"
    assert written["admin"] not in conf
    # Readable by the service's group (graylog runs as user graylog), not by others.
    [install] = [line for line in written["lines"] if line.startswith("Graylog server.conf: sh -c")]
    assert "chmod 640 /etc/graylog/server/server.conf.kubi-new" in install
    assert "chown root:graylog /etc/graylog/server/server.conf.kubi-new" in install


def test_jvm_heaps(written):
    default = written["files"]["/etc/default/graylog-server"]
    assert 'GRAYLOG_SERVER_JAVA_OPTS="-Xms3g -Xmx3g ' in default
    heap = written["files"]["/etc/opensearch/jvm.options.d/kubi-heap.options"]
    assert [line for line in heap.splitlines() if not line.startswith("#")] == ["-Xms2g", "-Xmx2g"]


def test_opensearch_and_mongodb_on_the_loopback(written):
    yml = written["files"]["/etc/opensearch/opensearch.yml"]
    settings = dict(
        line.split(": ", 1) for line in yml.splitlines() if line and not line.startswith("#")
    )
    assert settings == {
        "cluster.name": "graylog",
        "node.name": "out1",
        "path.data": "/var/lib/opensearch",
        "path.logs": "/var/log/opensearch",
        "network.host": "127.0.0.1",
        "http.port": "9200",
        "discovery.type": "single-node",
        "action.auto_create_index": "false",
        "plugins.security.disabled": "true",
    }
    mongod = written["files"]["/etc/mongod.conf"]
    assert "  bindIp: 127.0.0.1\n" in mongod and "  port: 27017\n" in mongod
    assert written["files"]["/etc/sysctl.d/90-kubi-opensearch.conf"].endswith(
        "vm.max_map_count = 262144\n"
    )


def test_input_spec_and_no_secret_elsewhere(written):
    import json

    spec = json.loads(written["files"]["/etc/kubi/graylog/input.json"])
    assert spec["api"] == "http://127.0.0.1:9100/api"
    assert spec["input"]["configuration"]["port"] == 12301
    assert spec["input"]["configuration"]["bind_address"] == "0.0.0.0"
    for path, content in written["files"].items():
        if path != "/etc/kubi/graylog/api.netrc":
            assert written["admin"] not in content, path
        if path != "/etc/graylog/server/server.conf":
            assert written["password_secret"] not in content, path


# --- the nginx sites, with a real nginx --------------------------------------------------------

needs_nginx = pytest.mark.skipif(
    not (NGINX and (MODULES / "50-mod-stream.conf").exists()),
    reason="needs nginx and libnginx-mod-stream (apt-get install nginx libnginx-mod-stream)",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def nginx(tmp_path):
    server = Nginx(tmp_path / "nginx")
    yield server
    if (server.root / "nginx.pid").exists():
        subprocess.run([NGINX, "-c", str(server.conf), "-s", "quit"], check=False)


def sites(description, listen: str) -> dict[str, str]:
    """The sites exactly as planned, listening on a loopback port instead of the host's
    address (nginx -t binds its listen addresses)."""
    files = uploads(plan("deploys/graylog.py", "out1", description, fresh_facts()))
    return {
        name: files[f"/etc/nginx/sites.conf.d/{name}.conf"].replace("10.20.0.12:80", listen)
        for name in ("graylog", "prometheus")
    }


@needs_nginx
@pytest.mark.parametrize("install", [True, False])
@pytest.mark.usefixtures("with_monitoring")
def test_planned_sites_pass_nginx_t(nginx, tmp_path, install):
    description = copy.deepcopy(DESCRIPTION)
    description["secrets_dir"] = str(tmp_path / "secrets")
    description["graylog"] = {"install": install}
    for name, content in sites(description, f"127.0.0.1:{free_port()}").items():
        (nginx.root / "sites.conf.d" / f"{name}.conf").write_text(content)
    result = nginx.test()
    assert result.returncode == 0, result.stderr


class Backend:
    """A stand-in for Graylog or the admin ingress on 127.0.0.1: records request headers."""

    def __init__(self):
        self.seen: list[dict] = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                backend.seen.append(
                    {"path": self.path, **{k.lower(): v for k, v in self.headers.items()}}
                )
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def get(port: int, host: str, headers: dict | None = None) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/system/lbstatus", headers={"Host": host, **(headers or {})}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


@needs_nginx
def test_sites_route_by_name_and_restrict_graylog(nginx):
    from kubi.templates import render

    backend = Backend()
    port = free_port()
    listen = f"127.0.0.1:{port}"
    try:
        graylog_site = render(
            "graylog", "graylog-site.conf", listen=listen, server_names=["graylog.t.internal"],
            allowed=["127.0.0.1"], http_port=backend.port,
        )  # fmt: skip
        prometheus_site = render(
            "graylog", "route-site.conf", listen=listen, ui="prometheus", title="Prometheus",
            hostname="prometheus.t.internal", admin_ingress=["127.0.0.1"], nodeport=backend.port,
        )  # fmt: skip
        subprocess.run([NGINX, "-c", str(nginx.conf)], check=True)
        # Through kubi's own validate-then-reload path, as on the host.
        assert nginx.put_site("graylog", graylog_site)
        assert nginx.put_site("prometheus", prometheus_site)
        wait_for(lambda: get(port, "prometheus.t.internal") == 200)

        cockpit_url = {"X-Graylog-Server-URL": "http://graylog.localhost:8080/"}
        assert get(port, "graylog.t.internal", cockpit_url) == 200
        assert backend.seen[-1]["host"] == "graylog.t.internal"
        assert backend.seen[-1]["x-graylog-server-url"] == "http://graylog.localhost:8080/"
        assert get(port, "prometheus.t.internal") == 200
        assert backend.seen[-1]["host"] == "prometheus.t.internal"

        # Only the listed addresses reach Graylog (nothing is sent anywhere for this).
        nginx.put_site("graylog", graylog_site.replace("allow 127.0.0.1;", "allow 192.0.2.1;"))
        wait_for(lambda: get(port, "graylog.t.internal") == 403)
    finally:
        backend.close()
    # Nothing behind the routes (Graylog or the cluster not there yet): 502, nginx still up.
    assert get(port, "prometheus.t.internal") == 502


def wait_for(condition, timeout: float = 5.0) -> None:
    """Bounded wait for a reload to take effect."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "nginx did not apply the change in time"
        time.sleep(0.05)


# The verification suite's `roles` marker is registered by its own conftest only.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnknownMarkWarning")
def test_verify_suite_reads_listening_addresses_with_ss():
    """The verification suite's port check, run here on sockets of known addresses."""
    import testinfra

    from tests.verify.test_graylog import LOOPBACK, WILDCARD, listeners

    local = testinfra.get_host("local://")
    with socket.socket() as loopback, socket.socket(socket.AF_INET6) as wildcard:
        loopback.bind(("127.0.0.1", 0))
        loopback.listen()
        wildcard.bind(("::", 0))
        wildcard.listen()
        assert listeners(local, loopback.getsockname()[1]) == {"127.0.0.1"} <= LOOPBACK
        assert listeners(local, wildcard.getsockname()[1]) & WILDCARD
        assert listeners(local, free_port()) == set()

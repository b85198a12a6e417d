"""Plans of deploys/graylog.py: the log stack and the nginx sites of the output host."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest

from kubi import graylog, graylog_api, ops

from .conftest import managed
from .harness import plan, uploads

DEPLOY = "deploys/graylog.py"
KEYRINGS = tuple(f"/etc/apt/keyrings/kubi-{n}.gpg" for n in ("mongodb", "opensearch", "graylog"))
STATE_KEY = "keyrings=" + ",".join(KEYRINGS)
INPUTS_KEY = "api=http://127.0.0.1:9000/api, netrc=/etc/kubi/graylog/api.netrc"
UNITS = ("mongod", "opensearch", "graylog-server")
SITES = {
    "graylog": "/etc/nginx/sites.conf.d/graylog.conf",
    "prometheus": "/etc/nginx/sites.conf.d/prometheus.conf",
}
# Every file the stack writes: (path, mode, user, group).
STACK_FILES = [
    ("/etc/apt/sources.list.d/kubi-mongodb.list", "644", "root", "root"),
    ("/etc/apt/sources.list.d/kubi-opensearch.list", "644", "root", "root"),
    ("/etc/apt/sources.list.d/kubi-graylog.list", "644", "root", "root"),
    ("/etc/apt/preferences.d/kubi-log-stack", "644", "root", "root"),
    ("/etc/sysctl.d/90-kubi-opensearch.conf", "644", "root", "root"),
    ("/etc/mongod.conf", "644", "root", "root"),
    ("/etc/opensearch/opensearch.yml", "640", "opensearch", "opensearch"),
    ("/etc/opensearch/jvm.options.d/kubi-heap.options", "640", "opensearch", "opensearch"),
    ("/etc/default/graylog-server", "644", "root", "root"),
    ("/etc/graylog/server/server.conf", "640", "root", "graylog"),
    ("/etc/systemd/system/graylog-server.service.d/kubi-order.conf", "644", "root", "root"),
    ("/usr/local/lib/kubi/graylog.py", "644", "root", "root"),
    ("/etc/kubi/graylog/api.netrc", "600", "root", "root"),
    ("/etc/kubi/graylog/input.json", "600", "root", "root"),
]
INSTALLED = {
    "mongodb-org-server": ["7.0.14"],
    "opensearch": ["2.15.0"],
    "graylog-server": ["6.1.4-1"],
}


@pytest.fixture
def description(description, tmp_path):
    description["secrets_dir"] = str(tmp_path / "secrets")
    return description


def fresh_facts():
    return {
        "facts.graylog.LogStackState": {
            STATE_KEY: {"keyrings": dict.fromkeys(KEYRINGS), "max_map_count": 65530}
        },
        "deb.DebPackages": {"_": {"nginx": ["1.22.1"]}},
        "kubi.facts.ManagedFile": {
            f"path={p}": None for p in [*SITES.values(), *(f[0] for f in STACK_FILES)]
        },
        "files.Directory": {
            f"path={p}": None
            for p in ("/etc/kubi/graylog", "/etc/opensearch", "/etc/opensearch/jvm.options.d")
        },
        "kubi.facts.ServiceState": {f"unit={u}": {"active": False, "enabled": None} for u in UNITS},
        "facts.graylog.GraylogInputs": {INPUTS_KEY: None},
    }


def _owned(content: str, mode: str, user: str, group: str) -> dict:
    return {**managed(content, mode), "user": user, "group": group}


def converged_facts(description):
    """What the output host reports once the fresh plan ran and Graylog created the input."""
    written = uploads(plan(DEPLOY, "out1", description, fresh_facts()))
    wanted = graylog.gelf_input(12201)
    keyring = {"fingerprints": [], "signing_until": [None]}
    return {
        "facts.graylog.LogStackState": {
            STATE_KEY: {
                "keyrings": {
                    path: {**keyring, "fingerprints": [repo.fingerprint]}
                    for path, repo in zip(KEYRINGS, _repos(), strict=True)
                },
                "max_map_count": 262144,
            }
        },
        "deb.DebPackages": {"_": {"nginx": ["1.22.1"], **INSTALLED}},
        "kubi.facts.ManagedFile": {
            **{f"path={p}": managed(written[p]) for p in SITES.values()},
            **{f"path={p}": _owned(written[p], m, u, g) for p, m, u, g in STACK_FILES},
        },
        "files.Directory": {
            "path=/etc/kubi/graylog": {"mode": 700, "user": "root", "group": "root"},
            "path=/etc/opensearch": {"mode": 750, "user": "root", "group": "opensearch"},
            "path=/etc/opensearch/jvm.options.d": {
                "mode": 750,
                "user": "root",
                "group": "opensearch",
            },
        },
        "kubi.facts.ServiceState": {f"unit={u}": {"active": True, "enabled": True} for u in UNITS},
        "facts.graylog.GraylogInputs": {
            INPUTS_KEY: [
                {
                    "id": "65f0c0ffee",
                    "title": wanted["title"],
                    "type": wanted["type"],
                    "global": True,
                    "attributes": {**wanted["configuration"], "decompress_size_limit": 8388608},
                }
            ]
        },
    }


@pytest.fixture(autouse=True)
def _monitoring(with_monitoring):
    """Every plan here with an add-on that publishes Prometheus on the output host."""


def _repos():
    from kubi.config import Versions

    return graylog.apt_sources(Versions())


def op_names(lines):
    return list(dict.fromkeys(line.partition(": ")[0] for line in lines))


def commands(lines, name):
    return [line.partition(": ")[2] for line in lines if line.partition(": ")[0] == name]


def test_fresh_output_host(description, tmp_path):
    lines = plan(DEPLOY, "out1", description, fresh_facts())
    assert op_names(lines) == [
        "nginx site graylog",
        "nginx site prometheus",
        # repositories: key, sources (through the platform's apt-cacher-ng), version pins
        "repository key mongodb (E58830201F7DD82CD808AA84160D26BB1785BA38)",
        "repository mongodb",
        "repository key opensearch (C5B7498965EFD1C2924BA9D539D319879310D3FC)",
        "repository opensearch",
        "repository key graylog (28AB6EB572779C2AD196BE22D44C1D8DB1606F22)",
        "repository graylog",
        "log stack version pins",
        # packages: each repository checked alone (one clear line if unusable), then install
        "repository mongodb reachable",
        "repository opensearch reachable",
        "repository graylog reachable",
        "log stack packages mongodb-org-server opensearch graylog-server",
        # configuration
        "vm.max_map_count 262144 for OpenSearch",
        "apply vm.max_map_count",
        "MongoDB configuration",
        # root's folders: kubi never writes through a folder the opensearch account controls
        "OpenSearch configuration folder /etc/opensearch (root's, read by opensearch)",
        "OpenSearch configuration folder /etc/opensearch/jvm.options.d "
        "(root's, read by opensearch)",
        "OpenSearch configuration",
        "OpenSearch heap 1g",
        "Graylog heap 1g",
        "Graylog server.conf",
        "Graylog starts after MongoDB and OpenSearch",
        "Graylog API client",
        "folder /etc/kubi/graylog",
        "Graylog API credentials",
        "Graylog input specification",
        # services in dependency order (nothing runs yet: no restart, just start)
        "mongod running",
        "opensearch running",
        "graylog-server running",
        # the input, once Graylog answers
        "Graylog input GELF TCP 12201",
    ]
    [key] = commands(lines, "repository key opensearch (C5B7498965EFD1C2924BA9D539D319879310D3FC)")
    assert (
        "curl -fsSL --retry 5 --retry-delay 2 --retry-all-errors --connect-timeout 20 "
        "--max-time 120 --proxy http://10.20.0.1:3142 "
        '-o "$tmp/key" http://HTTPS///artifacts.opensearch.org/publickeys/opensearch.pgp'
    ) in key
    assert "gpg --batch --export C5B7498965EFD1C2924BA9D539D319879310D3FC" in key
    assert 'install -D -m 644 "$tmp/keyring.gpg" /etc/apt/keyrings/kubi-opensearch.gpg' in key
    [check] = commands(lines, "repository graylog reachable")
    assert "apt-get -q update --error-on=any" in check
    assert "-o Dir::Etc::sourcelist=/etc/apt/sources.list.d/kubi-graylog.list" in check
    [install] = commands(lines, "log stack packages mongodb-org-server opensearch graylog-server")
    env = "DISABLE_INSTALL_DEMO_CONFIG=true"
    assert install == ops.apt_explained(
        f"{ops.REPAIR_DPKG} && {ops.refresh_lists(env)} && "
        + ops.apt_get(
            "-q -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "
            "-o DPkg::Lock::Timeout=300 install mongodb-org-server opensearch graylog-server",
            env,
        )
    )
    assert commands(lines, "mongod running") == [
        "systemctl enable mongod",
        "systemctl start mongod",
    ]
    assert commands(lines, "Graylog input GELF TCP 12201") == [
        "python3 /usr/local/lib/kubi/graylog.py ensure-input /etc/kubi/graylog/input.json "
        "/etc/kubi/graylog/api.netrc"
    ]

    written = uploads(lines)
    assert written["/etc/apt/sources.list.d/kubi-graylog.list"].splitlines()[1] == (
        "deb [signed-by=/etc/apt/keyrings/kubi-graylog.gpg] "
        "http://HTTPS///downloads.graylog.org/repo/debian/ stable 6.1"
    )
    assert written["/etc/apt/sources.list.d/kubi-mongodb.list"].splitlines()[1] == (
        "deb [signed-by=/etc/apt/keyrings/kubi-mongodb.gpg] "
        "http://HTTPS///repo.mongodb.org/apt/debian/ bookworm/mongodb-org/7.0 main"
    )
    pins = written["/etc/apt/preferences.d/kubi-log-stack"]
    assert "Package: opensearch\nPin: version 2.15.0\nPin-Priority: 1001" in pins
    assert "Package: graylog-server\nPin: version 6.1.*\nPin-Priority: 1001" in pins
    assert "Package: mongodb-org-server\nPin: version 7.0.*\nPin-Priority: 1001" in pins

    # Secrets: generated into the secrets store, only in the two files that need them,
    # never in a command.
    secrets = tmp_path / "secrets"
    admin = (secrets / "graylog-admin-password").read_text()
    password_secret = (secrets / "graylog-password-secret").read_text()
    assert len(password_secret) >= 64
    conf = written["/etc/graylog/server/server.conf"]
    assert f"password_secret = {password_secret}\n" in conf
    assert f"root_password_sha2 = {hashlib.sha256(admin.encode()).hexdigest()}\n" in conf
    assert "http_bind_address = 127.0.0.1:9000\n" in conf
    assert written["/etc/kubi/graylog/api.netrc"] == (
        f"machine 127.0.0.1 login admin password {admin}\n"
    )
    for path, content in written.items():
        if path not in ("/etc/graylog/server/server.conf", "/etc/kubi/graylog/api.netrc"):
            assert admin not in content and password_secret not in content, path
    assert admin not in conf
    for line in lines:
        if not line.partition(": ")[2].startswith("upload "):
            assert admin not in line and password_secret not in line
    # The uploaded API client is kubi/graylog_api.py itself.
    assert written["/usr/local/lib/kubi/graylog.py"] == Path(graylog_api.__file__).read_text()


def test_converged_output_host_plans_nothing(description):
    assert plan(DEPLOY, "out1", description, converged_facts(description)) == []


def test_install_false_plans_only_the_nginx_sites_and_says_so(description, caplog):
    description["graylog"] = {"install": False}
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        lines = plan(DEPLOY, "out1", description, fresh_facts())
    assert op_names(lines) == ["nginx site graylog", "nginx site prometheus"]
    notices = [r.getMessage() for r in caplog.records if "graylog.install" in r.getMessage()]
    assert notices == [
        "graylog: graylog.install is false: the log stack (Graylog, OpenSearch, MongoDB) is "
        "left out on out1; only its nginx sites are deployed"
    ]


def test_nginx_sites(description):
    written = uploads(plan(DEPLOY, "out1", description, fresh_facts()))
    site = written[SITES["graylog"]]
    assert "listen 10.20.0.12:80;" in site
    assert "server_name graylog.plan.kubi.internal out1;" in site
    assert "server 127.0.0.1:9000 max_fails=3 fail_timeout=10s;" in site
    allowed = [line.strip() for line in site.splitlines() if line.strip().startswith("allow ")]
    assert allowed == [
        "allow 127.0.0.1;",
        "allow 10.20.0.11;",
        "allow 10.20.0.12;",
        "allow 10.20.0.13;",
        "allow 10.20.0.21;",
        "allow 10.20.0.31;",
    ]
    assert "deny all;" in site
    prometheus = written[SITES["prometheus"]]
    assert "server_name prometheus.plan.kubi.internal;" in prometheus
    assert "server 10.20.0.31:30080 max_fails=2 fail_timeout=10s;" in prometheus
    assert "proxy_set_header Host prometheus.plan.kubi.internal;" in prometheus


def test_only_the_routes_the_components_publish(description, monkeypatch):
    """No add-on publishing a UI for outside systems: the Graylog site alone."""
    from kubi import components

    monkeypatch.setattr(
        components, "COMPONENTS", tuple(c for c in components.COMPONENTS if c.name != "monitoring")
    )
    lines = plan(DEPLOY, "out1", description, fresh_facts())
    assert [n for n in op_names(lines) if n.startswith("nginx site")] == ["nginx site graylog"]


def test_mirror_configured_sources_and_keys_point_at_it(description):
    del description["apt_proxy"]
    description["graylog"] = {"apt_mirror": "http://mirror.plan.kubi.internal/apt/"}
    lines = plan(DEPLOY, "out1", description, fresh_facts())
    written = uploads(lines)
    base = "http://mirror.plan.kubi.internal/apt"
    assert written["/etc/apt/sources.list.d/kubi-opensearch.list"].splitlines()[1] == (
        "deb [signed-by=/etc/apt/keyrings/kubi-opensearch.gpg] "
        f"{base}/artifacts.opensearch.org/releases/bundle/opensearch/2.x/apt/ stable main"
    )
    assert written["/etc/apt/sources.list.d/kubi-graylog.list"].splitlines()[1] == (
        "deb [signed-by=/etc/apt/keyrings/kubi-graylog.gpg] "
        f"{base}/downloads.graylog.org/repo/debian/ stable 6.1"
    )
    [key] = commands(lines, "repository key mongodb (E58830201F7DD82CD808AA84160D26BB1785BA38)")
    assert f'-o "$tmp/key" {base}/pgp.mongodb.com/server-7.0.asc' in key
    assert "--proxy" not in key
    assert not [p for p, text in written.items() if p.endswith(".list") and "HTTPS///" in text]


def test_mirror_through_the_apt_proxy(description):
    description["graylog"] = {"apt_mirror": "http://mirror.plan.kubi.internal/apt"}
    lines = plan(DEPLOY, "out1", description, fresh_facts())
    [key] = commands(lines, "repository key graylog (28AB6EB572779C2AD196BE22D44C1D8DB1606F22)")
    # An http mirror goes through the host's apt proxy, as apt itself does.
    assert (
        '--proxy http://10.20.0.1:3142 -o "$tmp/key" '
        "http://mirror.plan.kubi.internal/apt/packages.graylog2.org/repo/debian/keyring.gpg"
    ) in key


def test_no_proxy_no_mirror_goes_upstream(description):
    del description["apt_proxy"]
    written = uploads(plan(DEPLOY, "out1", description, fresh_facts()))
    assert written["/etc/apt/sources.list.d/kubi-mongodb.list"].splitlines()[1] == (
        "deb [signed-by=/etc/apt/keyrings/kubi-mongodb.gpg] "
        "https://repo.mongodb.org/apt/debian/ bookworm/mongodb-org/7.0 main"
    )


@pytest.mark.parametrize("host", ["in1", "repo1", "cp1", "w1"])
def test_other_hosts_get_nothing(description, host):
    assert plan(DEPLOY, host, description, {}) == []


def test_heap_change_restarts_only_that_service(description):
    facts = converged_facts(description)
    description["graylog"] = {"graylog_heap": "2g"}
    lines = plan(DEPLOY, "out1", description, facts)
    assert op_names(lines) == ["Graylog heap 2g", "restart graylog-server (configuration changed)"]
    assert uploads(lines)["/etc/default/graylog-server"].count("-Xms2g -Xmx2g") == 1
    assert commands(lines, "restart graylog-server (configuration changed)") == [
        "systemctl restart graylog-server"
    ]


def test_opensearch_heap_change_restarts_opensearch_once(description):
    facts = converged_facts(description)
    description["graylog"] = {"opensearch_heap": "3g"}
    lines = plan(DEPLOY, "out1", description, facts)
    assert op_names(lines) == ["OpenSearch heap 3g", "restart opensearch (configuration changed)"]
    assert "-Xms3g\n-Xmx3g\n" in uploads(lines)["/etc/opensearch/jvm.options.d/kubi-heap.options"]


def test_input_with_other_settings_is_planned_alone(description):
    facts = converged_facts(description)
    facts["facts.graylog.GraylogInputs"][INPUTS_KEY][0]["attributes"]["port"] = 12999
    lines = plan(DEPLOY, "out1", description, facts)
    assert op_names(lines) == ["Graylog input GELF TCP 12201"]


def test_key_near_expiry_is_downloaded_again(description):
    facts = converged_facts(description)
    state = facts["facts.graylog.LogStackState"][STATE_KEY]
    state["keyrings"][KEYRINGS[1]]["signing_until"] = [1_000_000_000]  # long expired
    lines = plan(DEPLOY, "out1", description, facts)
    assert op_names(lines) == [
        "repository key opensearch (C5B7498965EFD1C2924BA9D539D319879310D3FC)"
    ]


def test_version_upgrade_installs_the_pinned_version(description):
    facts = converged_facts(description)
    facts["deb.DebPackages"]["_"]["opensearch"] = ["2.13.0"]
    lines = plan(DEPLOY, "out1", description, facts)
    assert op_names(lines) == [
        "repository opensearch reachable",
        "log stack packages opensearch",
    ]


def test_newer_installed_version_is_refused(description):
    facts = converged_facts(description)
    facts["deb.DebPackages"]["_"]["opensearch"] = ["2.17.1"]
    with pytest.raises(ValueError, match="opensearch 2.17.1 is installed, newer than"):
        plan(DEPLOY, "out1", description, facts)

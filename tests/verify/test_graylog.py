"""graylog: the log stack and the nginx sites, verified on the output host.

The stack's tests are skipped when the platform leaves it out (`graylog.install = false`,
e.g. a lab that cannot reach the vendors' repositories); the nginx sites are always there.
"""

from __future__ import annotations

import json

import pytest

from kubi import graylog

UNITS = ("mongod", "opensearch", "graylog-server")
# How `ss` shows the loopback and the wildcard (Java binds IPv4 addresses as IPv6-mapped).
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
WILDCARD = {"0.0.0.0", "*", "::", "::ffff:0.0.0.0"}


@pytest.fixture
def installed(platform):
    if not platform.graylog.install:
        pytest.skip(
            "graylog.install is false: this platform leaves the log stack out (the lab does "
            "when the vendors' apt repositories are not reachable)"
        )


def listeners(node, port: int) -> set[str]:
    """Addresses with a TCP socket listening on `port` (ss, numeric)."""
    out = node.check_output(f"ss -Htln 'sport = :{port}'")
    return {line.split()[3].rsplit(":", 1)[0].strip("[]") for line in out.splitlines() if line}


def api(node, platform, path: str) -> dict:
    """GET on Graylog's API from the host itself, with the deploy's netrc file."""
    base = graylog.api_base(platform.graylog.http_port)
    out = node.check_output(
        f"curl -fsS --noproxy '*' --max-time 10 --netrc-file {graylog.NETRC_PATH} "
        f"-H 'Accept: application/json' -H 'X-Requested-By: kubi' {base}{path}"
    )
    return json.loads(out)


@pytest.mark.usefixtures("installed")
class TestStack:
    """The log stack itself: only where the platform installs it."""

    def test_packages_at_the_platform_versions(self, node, platform):
        versions = platform.versions
        assert node.package("graylog-server").version.startswith(f"{versions.graylog}.")
        assert node.package("opensearch").version == versions.opensearch
        assert node.package("mongodb-org-server").version.startswith(f"{versions.mongodb}.")

    def test_services_enabled_and_running(self, node):
        for unit in UNITS:
            service = node.service(unit)
            assert service.is_enabled, unit
            assert service.is_running, unit

    def test_stores_and_graylog_listen_on_the_loopback_only(self, node, platform):
        for name, port in (
            ("MongoDB", 27017),
            ("OpenSearch", 9200),
            ("OpenSearch transport", 9300),
            ("Graylog", platform.graylog.http_port),
        ):
            bound = listeners(node, port)
            assert bound, f"{name}: nothing listens on port {port}"
            assert bound <= LOOPBACK, f"{name} listens on {sorted(bound)}"

    def test_gelf_tcp_port_listens_for_the_platform(self, node, platform):
        bound = listeners(node, platform.graylog.gelf_tcp_port)
        assert bound & WILDCARD, f"GELF TCP listens on {sorted(bound)}"

    def test_gelf_input_present_as_wanted(self, node, platform):
        inputs = api(node, platform, "/system/inputs")["inputs"]
        wanted = graylog.gelf_input(platform.graylog.gelf_tcp_port)
        assert graylog.input_action(inputs, wanted) is None, [i.get("title") for i in inputs]

    def test_graylog_is_alive(self, node, platform):
        base = graylog.api_base(platform.graylog.http_port)
        assert node.check_output(f"curl -fsS --noproxy '*' {base}/system/lbstatus") == "ALIVE"

    def test_secrets_are_not_readable_by_others(self, node):
        conf = node.file("/etc/graylog/server/server.conf")
        assert (conf.mode, conf.user, conf.group) == (0o640, "root", "graylog")
        netrc = node.file(graylog.NETRC_PATH)
        assert (netrc.mode, netrc.user) == (0o600, "root")
        assert node.file(graylog.CONFIG_DIR).mode == 0o700

    def test_opensearch_kernel_setting(self, node):
        assert int(node.check_output("cat /proc/sys/vm/max_map_count")) >= 262144


def test_nginx_sites_valid_and_routing(node, platform):
    # Graylog's own site, and one per in-cluster UI a component publishes for outside systems.
    published = [route.name for route in platform.ui_routes if route.output_host]
    for site in ("graylog", *published):
        assert node.file(f"/etc/nginx/sites.conf.d/{site}.conf").is_file
    assert node.run("nginx -t").rc == 0
    # From the host itself (a platform address, so allowed): Graylog answers through nginx
    # on the address the site listens on (a 502 while the platform leaves the stack out).
    address = node.check_output(
        "awk '$1 == \"listen\" {print $2; exit}' /etc/nginx/sites.conf.d/graylog.conf"
    ).rstrip(";")
    status = node.check_output(
        f"curl -s --noproxy '*' -o /dev/null -w '%{{http_code}}' "
        f"-H 'Host: {platform.ui_hostname('graylog')}' http://{address}/api/system/lbstatus"
    )
    assert status == ("200" if platform.graylog.install else "502")

"""graylog: the output host's log stack and its nginx sites.

Graylog (single node) with OpenSearch (its search backend) and MongoDB (its configuration
store), each from its vendor's apt repository at the versions of the platform config, all
three on the loopback only; a global GELF TCP input (every log stream of the platform
arrives there) created through Graylog's REST API; and the output host's nginx sites on
the host's address: Graylog for the platform hosts (the input host's cockpit), and every
in-cluster UI that a component publishes for systems outside the platform (its
`UiRoute.output_host` in kubi.components, e.g. Prometheus for existing collection systems).

With `graylog.install = false` only the nginx sites are deployed (they answer 502 until
Graylog and the cluster exist) and one notice says the stack was left out.

    pyinfra inventories/<env>.py deploys/graylog.py
"""

import hashlib
import json
import secrets
import shlex
from pathlib import Path

from pyinfra import host, logger
from pyinfra.operations import files, server

import kubi.graylog
from facts.graylog import GraylogInputs, LogStackState
from kubi import graylog_api, nginx, ops
from kubi.config import Host, Platform
from kubi.config.graylog import GraylogSettings
from kubi.deploy import addresses, component, entry_script, me, platform, vendor_packages
from kubi.facts import ServiceState
from kubi.secrets import for_platform
from kubi.templates import render

MAX_MAP_COUNT = 262144
SYSCTL_FILE = "/etc/sysctl.d/90-kubi-opensearch.conf"
SERVER_CONF = "/etc/graylog/server/server.conf"
OPENSEARCH_CONFIG_DIRS = ("/etc/opensearch", "/etc/opensearch/jvm.options.d")


@component("graylog")
def graylog() -> None:
    cfg, node = platform(), me()
    nginx_sites(cfg, node)
    if not cfg.graylog.install:
        logger.warning(
            f"graylog: graylog.install is false: the log stack (Graylog, OpenSearch, MongoDB) "
            f"is left out on {node.name}; only its nginx sites are deployed"
        )
        return
    sources = kubi.graylog.apt_sources(cfg.versions)
    state = host.get_fact(LogStackState, keyrings=tuple(r.keyring for r in sources))
    # OpenSearch's package would otherwise install its demo security configuration,
    # which needs an initial admin password; kubi turns the security plugin off instead.
    vendor_packages(
        node, sources, state["keyrings"], cfg.graylog.apt_mirror,
        preferences=kubi.graylog.PREFERENCES_PATH, subject="log stack",
        env="DISABLE_INSTALL_DEMO_CONFIG=true",
    )  # fmt: skip
    kernel(state)
    services(configuration(cfg, node))
    gelf_input(cfg.graylog)


def nginx_sites(cfg: Platform, node: Host) -> None:
    """The sites, whether the stack is installed or not: they must pass `nginx -t` alone."""
    settings = cfg.graylog
    ip_of = addresses()
    listen = f"{ip_of[node.name]}:80"
    nginx.site(
        "graylog",
        render(
            "graylog",
            "graylog-site.conf",
            listen=listen,
            server_names=[cfg.ui_hostname("graylog"), node.name],
            # The platform hosts (the cockpit on the input host first) and local checks.
            allowed=["127.0.0.1", *dict.fromkeys(ip_of[h.name] for h in cfg.hosts)],
            http_port=settings.http_port,
        ),
    )
    for route in cfg.ui_routes:
        if route.output_host:
            nginx.site(
                route.name,
                render(
                    "graylog",
                    "route-site.conf",
                    listen=listen,
                    ui=route.name,
                    title=route.title,
                    hostname=cfg.ui_hostname(route.name),
                    admin_ingress=[ip_of[h.name] for h in cfg.admin_ingress_nodes],
                    nodeport=cfg.ingress.admin_http_nodeport,
                ),
            )


def kernel(state: dict) -> None:
    """OpenSearch maps its index files into memory: raise the kernel's limit, at boot too."""
    ops.file(
        name=f"vm.max_map_count {MAX_MAP_COUNT} for OpenSearch",
        path=SYSCTL_FILE,
        content=render("graylog", "sysctl.conf", max_map_count=MAX_MAP_COUNT),
    )
    if (state["max_map_count"] or 0) < MAX_MAP_COUNT:
        # Only our own file: `sysctl --system` would touch every other key as well.
        server.shell(
            name="apply vm.max_map_count", commands=[f"sysctl -q -p {shlex.quote(SYSCTL_FILE)}"]
        )


def configuration(cfg: Platform, node: Host) -> dict[str, list]:
    """Every configuration file; returns the operations that change files, per service."""
    settings = cfg.graylog
    store = for_platform(cfg)
    password_secret = store.get(
        kubi.graylog.SECRET_PASSWORD_SECRET, lambda: secrets.token_urlsafe(72)
    )
    admin_password = store.get(kubi.graylog.SECRET_ADMIN_PASSWORD)
    versions = cfg.versions

    mongod = ops.file(
        name="MongoDB configuration",
        path="/etc/mongod.conf",
        content=render("graylog", "mongod.conf", version=versions.mongodb),
    )
    # OpenSearch's package gives its configuration folder to opensearch:opensearch (0640
    # files) on every upgrade. The files keep that owner and mode, so nothing drifts; the
    # folders become root's (the service only reads them), as kubi never writes through a
    # folder another account controls: a swapped link there would be refused.
    for folder in OPENSEARCH_CONFIG_DIRS:
        files.directory(
            name=f"OpenSearch configuration folder {folder} (root's, read by opensearch)",
            path=folder,
            user="root",
            group="opensearch",
            mode="750",
        )
    opensearch = [
        ops.file(
            name="OpenSearch configuration",
            path="/etc/opensearch/opensearch.yml",
            content=render(
                "graylog", "opensearch.yml", version=versions.opensearch, node_name=node.short_name
            ),
            mode="640",
            user="opensearch",
            group="opensearch",
        ),
        ops.file(
            name=f"OpenSearch heap {settings.opensearch_heap}",
            path="/etc/opensearch/jvm.options.d/kubi-heap.options",
            content=render("graylog", "opensearch-heap.options", heap=settings.opensearch_heap),
            mode="640",
            user="opensearch",
            group="opensearch",
        ),
    ]
    graylog_server = [
        ops.file(
            name=f"Graylog heap {settings.graylog_heap}",
            path="/etc/default/graylog-server",
            content=render("graylog", "graylog-server.default", heap=settings.graylog_heap),
        ),
        # Holds password_secret: readable by the service (group graylog), not by others.
        ops.file(
            name="Graylog server.conf",
            path=SERVER_CONF,
            content=render(
                "graylog",
                "server.conf",
                version=versions.graylog,
                password_secret=password_secret,
                root_username=kubi.graylog.ADMIN_USER,
                root_password_sha2=hashlib.sha256(admin_password.encode()).hexdigest(),
                timezone=cfg.seed.timezone,
                http_port=settings.http_port,
                # The cockpit's name for Graylog (the cockpit sends the exact URL per request).
                external_uri=f"http://graylog.localhost:{cfg.cockpit.port}/",
            ),
            mode="640",
            group="graylog",
        ),
        ops.file(
            name="Graylog starts after MongoDB and OpenSearch",
            path="/etc/systemd/system/graylog-server.service.d/kubi-order.conf",
            content=render("graylog", "graylog-order.conf"),
            make_dirs=True,
            reload="systemctl daemon-reload",
        ),
    ]
    # What the input step runs with: the script (kubi/graylog_api.py), what it wants, and the
    # admin credentials in a root-only netrc file (never on a command line). The folder is
    # root-only too, so no file in it is readable by others even while it is uploaded.
    ops.file(
        name="Graylog API client",
        path=kubi.graylog.SCRIPT_PATH,
        content=Path(graylog_api.__file__).read_text(),
        make_dirs=True,
    )
    files.directory(
        name=f"folder {kubi.graylog.CONFIG_DIR}", path=kubi.graylog.CONFIG_DIR, mode="700"
    )
    ops.file(
        name="Graylog API credentials",
        path=kubi.graylog.NETRC_PATH,
        content=render(
            "graylog", "graylog-api.netrc", user=kubi.graylog.ADMIN_USER, password=admin_password
        ),
        mode="600",
    )
    ops.file(
        name="Graylog input specification",
        path=kubi.graylog.INPUT_SPEC_PATH,
        content=json.dumps(
            kubi.graylog.input_spec(settings.http_port, settings.gelf_tcp_port),
            indent=2,
            sort_keys=True,
        )
        + "\n",
        mode="600",
    )
    return {"mongod": [mongod], "opensearch": opensearch, "graylog-server": graylog_server}


def services(changes: dict[str, list]) -> None:
    """In dependency order: MongoDB and OpenSearch before Graylog. A running service whose
    configuration changed restarts once; a stopped one simply starts with the new one."""
    for unit, changed in host.loop(changes.items()):
        if (
            any(op.will_change for op in changed)
            and host.get_fact(ServiceState, unit=unit)["active"]
        ):
            server.shell(
                name=f"restart {unit} (configuration changed)",
                commands=[f"systemctl restart {shlex.quote(unit)}"],
            )
        ops.service(name=f"{unit} running", unit=unit)


def gelf_input(settings: GraylogSettings) -> None:
    """The GELF TCP input, created or updated through the API once Graylog answers."""
    wanted = kubi.graylog.gelf_input(settings.gelf_tcp_port)
    inputs = host.get_fact(
        GraylogInputs, api=kubi.graylog.api_base(settings.http_port), netrc=kubi.graylog.NETRC_PATH
    )
    if inputs is not None and kubi.graylog.input_action(inputs, wanted) is None:
        return
    server.shell(
        name=f"Graylog input GELF TCP {settings.gelf_tcp_port}",
        commands=[kubi.graylog.ensure_input_command()],
    )


if entry_script(__name__):
    graylog()

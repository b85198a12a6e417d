"""graylog: the output host's log stack as data: repositories, paths, the GELF input.

Graylog (single node) stores its configuration in MongoDB and its messages in OpenSearch,
both single node and on the loopback only. This module holds what the deploy
(`deploys/graylog.py`) needs besides templates:

1. The three vendor apt repositories (`kubi.aptsource`) for the versions of
   `Platform.versions` (checked against the matrix in `kubi/config/log_stack.toml`, the one
   compatibility matrix), their pinned key fingerprints, and the advice their messages
   give (`OWNER`): set `graylog.apt_mirror` (apt-mirror layout) or leave the stack out.

2. Where things live on the output host, and the secrets' names.

3. The GELF TCP input kubi wants. The diff against Graylog's inputs (`input_action`) and
   the REST client live in `kubi.graylog_api`, the standard-library-only file the deploy
   uploads and runs on the host (``python3 graylog.py ensure-input SPEC NETRC``).
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from kubi import graylog_api
from kubi.aptsource import AptSource, Owner, release_url
from kubi.aptsource import upstream_hosts as _upstream_hosts
from kubi.graylog_api import ADMIN_USER as ADMIN_USER
from kubi.graylog_api import input_action as input_action
from kubi.graylog_api import input_request as input_request

if TYPE_CHECKING:
    from kubi.config import Platform, Versions

# --- where things live on the output host ---------------------------------------------------

PREFERENCES_PATH = "/etc/apt/preferences.d/kubi-log-stack"
# Where the deploy uploads kubi/graylog_api.py (the name predates that file: kept, so a
# converged host keeps one copy and the same command).
SCRIPT_PATH = "/usr/local/lib/kubi/graylog.py"
CONFIG_DIR = "/etc/kubi/graylog"  # 0700 root
INPUT_SPEC_PATH = f"{CONFIG_DIR}/input.json"
NETRC_PATH = f"{CONFIG_DIR}/api.netrc"  # 0600 root: the admin credentials for the API

INPUT_TITLE = "kubi GELF TCP"
GELF_TCP_TYPE = "org.graylog2.inputs.gelf.tcp.GELFTCPInput"
WAIT_SECONDS = graylog_api.WAIT_SECONDS

# The secrets store's names (kubi.secrets): generated once, kept outside the repository.
SECRET_PASSWORD_SECRET = "graylog-password-secret"
SECRET_ADMIN_PASSWORD = "graylog-admin-password"

# --- the vendor repositories -----------------------------------------------------------------

# Primary key fingerprints, checked against every downloaded key.
GRAYLOG_KEY = "28AB6EB572779C2AD196BE22D44C1D8DB1606F22"  # Graylog (TORCH GmbH), all series
OPENSEARCH_KEY = "C5B7498965EFD1C2924BA9D539D319879310D3FC"  # OpenSearch 1.x and 2.x
MONGODB_KEYS = {"7.0": "E58830201F7DD82CD808AA84160D26BB1785BA38"}

# What the log stack's repository messages advise, and why its versions are pinned.
OWNER = Owner(
    component="graylog",
    pinned_in="kubi/graylog.py",
    mirror_setting="graylog.apt_mirror",
    leave_out="set graylog.install = false to leave the log stack out",
    subject="the log stack",
    newer_hint=(
        "set the version in the inventory to the installed one (within kubi/config/log_stack.toml)"
    ),
    pins_why=(
        "the log stack stays at the versions of the platform\n"
        "config (versions.graylog, versions.opensearch, versions.mongodb), whatever newer\n"
        "the repositories offer. A newer version is a new row of kubi/config/log_stack.toml."
    ),
)


def apt_sources(versions: Versions) -> list[AptSource]:
    """The three repositories for the pinned versions, in install order.

    (kubi.config.Versions already refuses a MongoDB series without bookworm packages.)
    """
    if versions.mongodb not in MONGODB_KEYS:
        raise ValueError(
            f"field 'versions.mongodb': kubi/graylog.py pins no signing key for MongoDB "
            f"{versions.mongodb}; add its fingerprint to MONGODB_KEYS"
        )
    opensearch_major = versions.opensearch.split(".")[0]
    return [
        AptSource(
            name="mongodb",
            url="https://repo.mongodb.org/apt/debian",
            suite=f"{versions.debian}/mongodb-org/{versions.mongodb}",
            components="main",
            key_url=f"https://pgp.mongodb.com/server-{versions.mongodb}.asc",
            fingerprint=MONGODB_KEYS[versions.mongodb],
            # The server alone: the metapackage would add shells and tools nobody needs here.
            pins={"mongodb-org-server": f"{versions.mongodb}.*"},
            owner=OWNER,
        ),
        AptSource(
            name="opensearch",
            url=f"https://artifacts.opensearch.org/releases/bundle/opensearch/{opensearch_major}.x/apt",
            suite="stable",
            components="main",
            key_url="https://artifacts.opensearch.org/publickeys/opensearch.pgp",
            fingerprint=OPENSEARCH_KEY,
            pins={"opensearch": versions.opensearch},
            owner=OWNER,
        ),
        AptSource(
            name="graylog",
            url="https://downloads.graylog.org/repo/debian",
            suite="stable",
            components=versions.graylog,  # one component per Graylog series
            key_url="https://packages.graylog2.org/repo/debian/keyring.gpg",
            fingerprint=GRAYLOG_KEY,
            pins={"graylog-server": f"{versions.graylog}.*"},
            owner=OWNER,
        ),
    ]


def upstream_repositories(platform: Platform) -> list[tuple[str, str]]:
    """(name, URL of the first file apt fetches) of every repository the log stack needs.

    For a reachability check before a run (the lab inventory uses it to decide
    `graylog.install`): the upstream URL, or the mirror's when `graylog.apt_mirror` is set.
    Any HTTP answer means the repository is reachable; only a connection, name or TLS
    failure means it is not.
    """
    mirror = platform.graylog.apt_mirror
    return [(s.name, release_url(s, mirror)) for s in apt_sources(platform.versions)]


def upstream_hosts(versions: Versions) -> list[str]:
    """Every host name the log stack downloads from (repositories and keys), e.g. for a
    proxy's or a firewall's allow list."""
    return _upstream_hosts(apt_sources(versions))


# --- the GELF TCP input -----------------------------------------------------------------------


def gelf_input(port: int) -> dict[str, Any]:
    """The input kubi wants: a global GELF TCP input on every address (fluentd sends here)."""
    return {
        "title": INPUT_TITLE,
        "type": GELF_TCP_TYPE,
        "global": True,
        "configuration": {
            "bind_address": "0.0.0.0",
            "port": port,
            "recv_buffer_size": 1048576,
            "number_worker_threads": 2,
            "tls_enable": False,
            "tcp_keepalive": False,
            "use_null_delimiter": True,  # GELF over TCP frames messages with a NUL byte
            "max_message_size": 2097152,
        },
    }


def api_base(http_port: int) -> str:
    """Graylog's REST API on the output host (Graylog listens on the loopback only)."""
    return f"http://127.0.0.1:{http_port}/api"


def input_spec(http_port: int, gelf_port: int) -> dict[str, Any]:
    """What ``ensure-input`` reads on the host: where the API is and the input wanted."""
    return {
        "api": api_base(http_port),
        "input": gelf_input(gelf_port),
        "wait_seconds": WAIT_SECONDS,
    }


def ensure_input_command(
    script: str = SCRIPT_PATH, spec: str = INPUT_SPEC_PATH, credentials: str = NETRC_PATH
) -> str:
    """The command the deploy runs on the host (no secret in it: they stay in files)."""
    q = shlex.quote
    return f"python3 {q(script)} ensure-input {q(spec)} {q(credentials)}"

"""graylog: the output host's log stack as data, plus the small REST client that runs there.

Graylog (single node) stores its configuration in MongoDB and its messages in OpenSearch,
both single node and on the loopback only. This module holds what the deploy
(`deploys/graylog.py`) needs besides templates:

1. Repositories. Each product comes from its vendor's apt repository, for the versions of
   `Platform.versions` (checked against `kubi.config.LOG_STACK_MATRIX`, the one
   compatibility matrix). A host reaches a repository in one of three ways:

   - `graylog.apt_mirror` set: ``<apt_mirror>/<host>/<path>`` of the upstream URL, the
     layout apt-mirror writes (serve its ``mirror/`` folder as is); keys live in the same
     tree, e.g. ``<apt_mirror>/pgp.mongodb.com/server-7.0.asc``.
   - the host installs through an apt proxy (`Platform.apt_proxy_for`): the proxy is
     apt-cacher-ng (the repository host's package proxy), so an ``https://`` repository is
     written ``http://HTTPS///<host>/<path>``: apt sends that plain-HTTP request to the
     proxy (``Acquire::http::Proxy``), the proxy fetches it upstream over HTTPS and caches
     the packages for every host. A CONNECT tunnel would need a ``PassThroughPattern`` on
     the proxy and would cache nothing.
   - otherwise the upstream URL, directly.

   Signing keys are pinned by fingerprint here and downloaded on the host, the same way
   apt reaches the repository: the download is imported into a throw-away keyring and only
   the key with the pinned fingerprint is exported to ``/etc/apt/keyrings``. Vendors extend
   their keys' expiry (OpenSearch does it yearly), so a fresh download picks up the renewal
   while the fingerprint keeps it trustworthy; the deploy downloads again when the
   installed keyring nears the end of its validity.

2. The GELF TCP input kubi wants and the diff against Graylog's inputs (pure functions).

3. The REST client (bounded wait, list, create or update), run on the output host by
   ``python3 graylog.py ensure-input SPEC NETRC``.

This file imports only the standard library at run time: the deploy uploads it verbatim to
the output host, so what the unit tests run is what the host runs.
"""

from __future__ import annotations

import base64
import json
import netrc
import shlex
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from fnmatch import fnmatch
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the host running this file has no pydantic
    from kubi.config import Platform, Versions

# --- where things live on the output host ---------------------------------------------------

KEYRINGS_DIR = "/etc/apt/keyrings"
SOURCES_DIR = "/etc/apt/sources.list.d"
PREFERENCES_PATH = "/etc/apt/preferences.d/kubi-log-stack"
SCRIPT_PATH = "/usr/local/lib/kubi/graylog.py"
CONFIG_DIR = "/etc/kubi/graylog"  # 0700 root
INPUT_SPEC_PATH = f"{CONFIG_DIR}/input.json"
NETRC_PATH = f"{CONFIG_DIR}/api.netrc"  # 0600 root: the admin credentials for the API

ADMIN_USER = "admin"
INPUT_TITLE = "kubi GELF TCP"
GELF_TCP_TYPE = "org.graylog2.inputs.gelf.tcp.GELFTCPInput"
# Graylog's first start creates its indices in OpenSearch: give it time, but not forever.
WAIT_SECONDS = 300
# Download a key again when no signing key of it stays valid this much longer.
KEY_RENEWAL_MARGIN = 30 * 86400

# The secrets store's names (kubi.secrets): generated once, kept outside the repository.
SECRET_PASSWORD_SECRET = "graylog-password-secret"
SECRET_ADMIN_PASSWORD = "graylog-admin-password"

# Primary key fingerprints, checked against every downloaded key.
GRAYLOG_KEY = "28AB6EB572779C2AD196BE22D44C1D8DB1606F22"  # Graylog (TORCH GmbH), all series
OPENSEARCH_KEY = "C5B7498965EFD1C2924BA9D539D319879310D3FC"  # OpenSearch 1.x and 2.x
MONGODB_KEYS = {"7.0": "E58830201F7DD82CD808AA84160D26BB1785BA38"}


@dataclass(frozen=True)
class Repository:
    """One vendor apt repository and the packages kubi installs from it.

    + name: short name (file names, messages)
    + url: upstream base URL of the repository
    + suite, components: the rest of the ``deb`` line
    + key_url: where the vendor publishes its signing key
    + fingerprint: the key's pinned primary fingerprint
    + pins: package -> apt version pin (``6.1.*``, ``2.15.0``): what to install
    + keyring, sources_path: where the key and the sources file go (defaults by name)
    """

    name: str
    url: str
    suite: str
    components: str
    key_url: str
    fingerprint: str
    pins: dict[str, str] = field(hash=False)
    keyring: str = ""  # default: /etc/apt/keyrings/kubi-<name>.gpg
    sources_path: str = ""  # default: /etc/apt/sources.list.d/kubi-<name>.list

    def __post_init__(self):
        if not self.keyring:
            object.__setattr__(self, "keyring", f"{KEYRINGS_DIR}/kubi-{self.name}.gpg")
        if not self.sources_path:
            object.__setattr__(self, "sources_path", f"{SOURCES_DIR}/kubi-{self.name}.list")

    @property
    def release_file(self) -> str:
        """Path (under the base URL) of the first file apt fetches from the repository."""
        return f"dists/{self.suite}/InRelease"


def repositories(versions: Versions) -> list[Repository]:
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
        Repository(
            name="mongodb",
            url="https://repo.mongodb.org/apt/debian",
            suite=f"{versions.debian}/mongodb-org/{versions.mongodb}",
            components="main",
            key_url=f"https://pgp.mongodb.com/server-{versions.mongodb}.asc",
            fingerprint=MONGODB_KEYS[versions.mongodb],
            # The server alone: the metapackage would add shells and tools nobody needs here.
            pins={"mongodb-org-server": f"{versions.mongodb}.*"},
        ),
        Repository(
            name="opensearch",
            url=f"https://artifacts.opensearch.org/releases/bundle/opensearch/{opensearch_major}.x/apt",
            suite="stable",
            components="main",
            key_url="https://artifacts.opensearch.org/publickeys/opensearch.pgp",
            fingerprint=OPENSEARCH_KEY,
            pins={"opensearch": versions.opensearch},
        ),
        Repository(
            name="graylog",
            url="https://downloads.graylog.org/repo/debian",
            suite="stable",
            components=versions.graylog,  # one component per Graylog series
            key_url="https://packages.graylog2.org/repo/debian/keyring.gpg",
            fingerprint=GRAYLOG_KEY,
            pins={"graylog-server": f"{versions.graylog}.*"},
        ),
    ]


def mirrored(url: str, mirror: str | None) -> str:
    """`url` under the mirror (apt-mirror layout: <mirror>/<host>/<path>), or unchanged."""
    if not mirror:
        return url
    parts = urllib.parse.urlsplit(url)
    return f"{mirror.rstrip('/')}/{parts.netloc}{parts.path}"


def through_proxy(url: str, proxy: str | None) -> str:
    """The URL to ask the apt-cacher-ng proxy for: https becomes http://HTTPS///host/path."""
    if proxy and url.startswith("https://"):
        return "http://HTTPS///" + url[len("https://") :]
    return url


def host_url(url: str, mirror: str | None, proxy: str | None) -> str:
    """How the output host asks for `url` (apt and the key download alike)."""
    return through_proxy(mirrored(url, mirror), proxy)


def sources_list(repo: Repository, mirror: str | None, proxy: str | None) -> str:
    """The repository's sources.list.d file."""
    base = host_url(repo.url, mirror, proxy).rstrip("/") + "/"
    how = (
        f"mirror {mirror}"
        if mirror
        else ("apt-cacher-ng HTTPS remapping through " + proxy if proxy else "upstream")
    )
    return (
        f"# Managed by kubi (graylog): {repo.name}, signed by {repo.fingerprint}, via {how}.\n"
        f"deb [signed-by={repo.keyring}] {base} {repo.suite} {repo.components}\n"
    )


def apt_preferences(repos: list[Repository]) -> str:
    """Pins that keep every package at the platform's version, even on `dist-upgrade`."""
    blocks = [
        "# Managed by kubi (graylog): the log stack stays at the versions of the platform\n"
        "# config (versions.graylog, versions.opensearch, versions.mongodb), whatever newer\n"
        "# the repositories offer. A newer version means a new entry in LOG_STACK_MATRIX.\n"
    ]
    for repo in repos:
        for package, pin in repo.pins.items():
            blocks.append(f"Package: {package}\nPin: version {pin}\nPin-Priority: 1001\n")
    return "\n".join(blocks)


def upstream_repositories(platform: Platform) -> list[tuple[str, str]]:
    """(name, URL of the first file apt fetches) of every repository the log stack needs.

    For a reachability check before a run (the lab inventory uses it to decide
    `graylog.install`): the upstream URL, or the mirror's when `graylog.apt_mirror` is set.
    Any HTTP answer means the repository is reachable; only a connection, name or TLS
    failure means it is not.
    """
    mirror = platform.graylog.apt_mirror
    return [
        (repo.name, f"{mirrored(repo.url, mirror).rstrip('/')}/{repo.release_file}")
        for repo in repositories(platform.versions)
    ]


def upstream_hosts(versions: Versions) -> list[str]:
    """Every host name the log stack downloads from (repositories and keys), e.g. for a
    proxy's or a firewall's allow list."""
    names = []
    for repo in repositories(versions):
        names += [urllib.parse.urlsplit(u).hostname or "" for u in (repo.url, repo.key_url)]
    return list(dict.fromkeys(names))


# --- commands the deploy runs on the output host --------------------------------------------


def _sh(script: str) -> str:
    return "sh -c " + shlex.quote(script)


def _hint(mirror: str | None) -> str:
    """What to do when a repository cannot be used (the end of every such message)."""
    if mirror:
        return (
            f"check that graylog.apt_mirror ({mirror}) answers and mirrors it, "
            "or set graylog.install = false to leave the log stack out"
        )
    return (
        "check the host's network or apt proxy, set graylog.apt_mirror to a mirror of it, "
        "or set graylog.install = false to leave the log stack out"
    )


def key_install_command(repo: Repository, mirror: str | None, proxy: str | None) -> str:
    """Download the signing key and keep only the pinned key, or fail with one clear line."""
    url = host_url(repo.key_url, mirror, proxy)
    q = shlex.quote
    via = f" --proxy {q(proxy)}" if proxy and not url.startswith("https://") else ""
    refused = (
        f"kubi: repository {repo.name}: the key at {url} has no key {repo.fingerprint} "
        "(pinned in kubi/graylog.py); refusing it: check that the mirror or proxy serves "
        "the vendor's key"
    )
    unreachable = (
        f"kubi: repository {repo.name}: cannot download its signing key from {url}"
        f"{' through ' + proxy if via else ''}"
    )
    hint = _hint(mirror)
    return _sh(
        "tmp=$(mktemp -d) || exit 1; "
        'trap \'GNUPGHOME="$tmp" gpgconf --kill all 2>/dev/null; rm -rf "$tmp"\' EXIT; '
        f"if ! err=$(curl -fsSL --retry 2 --connect-timeout 20 --max-time 120{via} "
        f'-o "$tmp/key" {q(url)} 2>&1); then '
        f'printf \'%s (%s); %s\\n\' {q(unreachable)} "$(echo "$err" | tail -n 1)" {q(hint)} >&2; '
        "exit 1; fi; "
        'GNUPGHOME="$tmp" gpg --batch --quiet --import "$tmp/key" >/dev/null 2>&1; '
        f'GNUPGHOME="$tmp" gpg --batch --export {repo.fingerprint} '
        '> "$tmp/keyring.gpg" 2>/dev/null; '
        f'if [ ! -s "$tmp/keyring.gpg" ]; then echo {q(refused)} >&2; exit 1; fi; '
        f'install -D -m 644 "$tmp/keyring.gpg" {q(repo.keyring)}'
    )


def repository_check_command(repo: Repository, mirror: str | None, proxy: str | None) -> str:
    """Refresh this repository's package list alone; on failure print one line naming it.

    `apt-get update` only warns (and exits 0) when a repository is unreachable:
    ``--error-on=any`` makes it fail, and only this repository's list is read and kept.
    """
    shown = host_url(repo.url, mirror, proxy)
    where = f"{shown} through {proxy}" if proxy else shown
    head = f"kubi: repository {repo.name} ({where}) cannot be used from this host"
    hint = _hint(mirror)
    options = (
        f"-o Dir::Etc::sourcelist={shlex.quote(repo.sources_path)} -o Dir::Etc::sourceparts=- "
        "-o APT::Get::List-Cleanup=0 -o Acquire::Retries=1 "
        "-o Acquire::http::Timeout=30 -o Acquire::https::Timeout=30"
    )
    return _sh(
        "if ! out=$(DEBIAN_FRONTEND=noninteractive apt-get -q update --error-on=any "
        f"{options} 2>&1); "
        "then reason=$(printf '%s\\n' \"$out\" | grep -m 1 '^E: ' | cut -c 4- | tr -s ' '); "
        f"printf '%s: %s; %s\\n' {shlex.quote(head)} \"${{reason:-apt-get update failed}}\" "
        f"{shlex.quote(hint)} >&2; exit 1; fi"
    )


def keyring_ok(info: dict | None, fingerprint: str, now: float) -> bool:
    """Whether an installed keyring (LogStackState fact) holds the pinned, still valid key."""
    if not info or fingerprint not in info["fingerprints"]:
        return False
    return any(until is None or until > now + KEY_RENEWAL_MARGIN for until in info["signing_until"])


def _version_key(version: str) -> tuple[int, ...]:
    numbers = []
    for part in version.split("-")[0].split("."):
        digits = "".join(c for c in part if c.isdigit())
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)


def pin_matches(version: str, pin: str) -> bool:
    return version == pin or fnmatch(version, pin) or version.startswith(pin + "-")


def packages_to_install(repos: list[Repository], installed: dict[str, list[str]]) -> list[str]:
    """Packages missing or older than their pin. A newer one is an error: kubi never
    downgrades a data store (its files may not be readable by an older version)."""
    todo = []
    for repo in repos:
        for package, pin in repo.pins.items():
            versions = installed.get(package) or []
            if any(pin_matches(v, pin) for v in versions):
                continue
            newer = [v for v in versions if _version_key(v) > _version_key(pin.rstrip(".*"))]
            if newer:
                raise ValueError(
                    f"{package} {newer[0]} is installed, newer than the platform's pin {pin} "
                    f"(versions.*): kubi does not downgrade the log stack; set the version "
                    "in the inventory to the installed one (within LOG_STACK_MATRIX)"
                )
            todo.append(package)
    return todo


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


def input_action(inputs: list[dict], wanted: dict) -> tuple[str, str | None] | None:
    """What to do, given Graylog's inputs (GET /api/system/inputs, its "inputs" list).

    ``("create", None)``, ``("update", <id>)`` or ``None`` when the input is as wanted.
    Only the fields kubi sets are compared: Graylog adds defaults for the others.
    """
    mine = [i for i in inputs if i.get("title") == wanted["title"]]
    if not mine:
        return ("create", None)
    current = mine[0]
    attributes = current.get("attributes") or {}
    same = (
        current.get("type") == wanted["type"]
        and bool(current.get("global")) == wanted["global"]
        and all(attributes.get(k) == v for k, v in wanted["configuration"].items())
    )
    return None if same else ("update", current["id"])


def input_request(action: tuple[str, str | None], wanted: dict) -> tuple[str, str, dict]:
    """(method, path under the API base, JSON body) of the request for `action`."""
    body = {
        "title": wanted["title"],
        "type": wanted["type"],
        "global": wanted["global"],
        "configuration": wanted["configuration"],
    }
    kind, input_id = action
    if kind == "create":
        return ("POST", "/system/inputs", body)
    return ("PUT", f"/system/inputs/{input_id}", body)


# --- REST client (runs on the output host) ------------------------------------------------------


class GraylogError(Exception):
    """A failure to report in one line (never containing the password)."""


@dataclass
class Api:
    """Graylog's REST API at `base` (e.g. http://127.0.0.1:9000/api) as `user`."""

    base: str
    user: str
    password: str = field(repr=False)
    timeout: float = 30.0

    def __post_init__(self):
        # The API is on the loopback: never through a proxy from the environment.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method: str, path: str, body: Any = None, accept: str = "application/json"):
        """(status, decoded body) of one request; HTTP errors are answers, not exceptions."""
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        headers = {
            "Accept": accept,
            "X-Requested-By": "kubi",  # Graylog refuses changes without it (CSRF guard)
            "Authorization": f"Basic {token}",
        }
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(
            self.base.rstrip("/") + path, data=data, headers=headers, method=method
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as answer:
                return answer.status, _decode(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _decode(exc.read())

    def wait_ready(self, seconds: float, interval: float = 2.0) -> None:
        """Wait (bounded) until the load-balancer status says ALIVE."""
        url = self.base.rstrip("/") + "/system/lbstatus"
        deadline = time.monotonic() + seconds
        last = "no answer yet"
        while True:
            try:
                status, body = self.call("GET", "/system/lbstatus", accept="text/plain")
                if status == 200 and "ALIVE" in str(body):
                    return
                last = f"HTTP {status} {str(body).strip()[:60]}"
            except (OSError, urllib.error.URLError) as exc:
                last = str(getattr(exc, "reason", exc))
            if time.monotonic() + interval > deadline:
                raise GraylogError(
                    f"kubi: Graylog did not become ready within {seconds:g} s at {url} "
                    f"(last: {last}); see `journalctl -u graylog-server` and "
                    "/var/log/graylog-server/server.log on this host"
                )
            time.sleep(interval)

    def checked(self, method: str, path: str, body: Any = None):
        status, answer = self.call(method, path, body)
        if status == 401:
            raise GraylogError(
                f"kubi: Graylog refused the credentials of user {self.user!r} (HTTP 401 on "
                f"{method} {path}): the password in {NETRC_PATH} does not match "
                "root_password_sha2 in /etc/graylog/server/server.conf; run the graylog "
                "deploy again (it writes both from the secrets store)"
            )
        if not 200 <= status < 300:
            message = answer.get("message") if isinstance(answer, dict) else answer
            raise GraylogError(
                f"kubi: Graylog answered HTTP {status} to {method} {path}: {message}"
            )
        return answer


def _decode(raw: bytes) -> Any:
    text = raw.decode(errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def ensure_input(api: Api, wanted: dict, wait_seconds: float = WAIT_SECONDS) -> str:
    """Create or update kubi's input when needed; return what was done, in one line."""
    api.wait_ready(wait_seconds)
    listing = api.checked("GET", "/system/inputs")
    action = input_action(listing.get("inputs", []), wanted)
    port = wanted["configuration"]["port"]
    if action is None:
        return f"kubi: input {wanted['title']!r} (GELF TCP {port}) is already as wanted"
    method, path, body = input_request(action, wanted)
    answer = api.checked(method, path, body)
    done = "created" if action[0] == "create" else "updated"
    input_id = answer.get("id", action[1]) if isinstance(answer, dict) else action[1]
    return f"kubi: input {wanted['title']!r} (GELF TCP {port}) {done}, id {input_id}"


def read_credentials(path: str, machine: str) -> tuple[str, str]:
    found = netrc.netrc(path).authenticators(machine)
    if not found:
        raise GraylogError(f"kubi: {path} has no entry for machine {machine}")
    login, _, password = found
    return login or ADMIN_USER, password or ""


def main(argv: list[str]) -> int:
    """``graylog.py ensure-input SPEC NETRC``: exit 0 when the input is as wanted."""
    if len(argv) != 3 or argv[0] != "ensure-input":
        print("usage: graylog.py ensure-input SPEC.json NETRC", file=sys.stderr)
        return 2
    spec_path, netrc_path = argv[1], argv[2]
    with open(spec_path) as handle:
        spec = json.load(handle)
    try:
        machine = urllib.parse.urlsplit(spec["api"]).hostname or "127.0.0.1"
        user, password = read_credentials(netrc_path, machine)
        api = Api(spec["api"], user, password)
        print(ensure_input(api, spec["input"], spec.get("wait_seconds", WAIT_SECONDS)))
    except (GraylogError, OSError, netrc.NetrcParseError) as exc:
        print(str(exc) if isinstance(exc, GraylogError) else f"kubi: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

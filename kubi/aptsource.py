"""Vendor apt sources: a third-party apt repository, its pinned key and pinned packages.

Several components install packages from their vendors' apt repositories (the log stack
today; the Kubernetes packages and containerd next). What differs between them is data (the
repositories, keys and versions) and the words that tell the operator what to do; how a
repository is reached, trusted, checked and pinned is the same, and lives here.

A host reaches a repository in one of three ways:

- a mirror is set: ``<mirror>/<host>/<path>`` of the upstream URL, the layout apt-mirror
  writes (serve its ``mirror/`` folder as is); keys live in the same tree, e.g.
  ``<mirror>/pgp.mongodb.com/server-7.0.asc``.
- the host installs through an apt proxy: the proxy is apt-cacher-ng (the repository
  host's package proxy), so an ``https://`` repository is written
  ``http://HTTPS///<host>/<path>``: apt sends that plain-HTTP request to the proxy
  (``Acquire::http::Proxy``), the proxy fetches it upstream over HTTPS and caches the
  packages for every host. A CONNECT tunnel would need a ``PassThroughPattern`` on the
  proxy and would cache nothing.
- otherwise the upstream URL, directly.

Signing keys are pinned by fingerprint and downloaded on the host, the same way apt reaches
the repository: the download is imported into a throw-away keyring and only the key with
the pinned fingerprint is exported to ``/etc/apt/keyrings``. Vendors extend their keys'
expiry (OpenSearch does it yearly), so a fresh download picks up the renewal while the
fingerprint keeps it trustworthy; a deploy downloads again when the installed keyring nears
the end of its validity (`keyring_ok`).

Every failure prints one line naming the repository and ending with the owning
component's advice (`Owner`), so the same code serves every component unchanged.
"""

from __future__ import annotations

import shlex
import urllib.parse
from dataclasses import dataclass, field
from fnmatch import fnmatch

APT_ENV = "DEBIAN_FRONTEND=noninteractive"
# Keep the admin's edits of conffiles, take the package's default for new ones; never prompt;
# wait (bounded) for dpkg's lock when another apt or dpkg is at work.
APT_OPTS = (
    "-q -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "
    "-o DPkg::Lock::Timeout=300"
)
# apt-get exits at once with "Could not get lock" while another apt holds the package lists
# or the download cache (apt-daily at a host's boot, an admin's apt), and DPkg::Lock::Timeout
# only covers dpkg's own lock: `apt_get` tries again every 2 s, for up to 5 minutes.
APT_LOCK_TRIES = 150

KEYRINGS_DIR = "/etc/apt/keyrings"
SOURCES_DIR = "/etc/apt/sources.list.d"
# Download a key again when no signing key of it stays valid this much longer.
KEY_RENEWAL_MARGIN = 30 * 86400


@dataclass(frozen=True)
class Owner:
    """The component that owns a set of sources, and what its messages tell the operator.

    + component: its name, in the ``# Managed by kubi (<component>)`` headers
    + pinned_in: the file where its fingerprints are pinned (named when a key is refused)
    + mirror_setting: the config field that names its mirror, e.g. ``graylog.apt_mirror``
    + leave_out: how to do without the packages, e.g. ``set graylog.install = false to
      leave the log stack out``; empty when the component cannot do without them
    + subject: what its packages are, e.g. ``the log stack`` (the downgrade refusal)
    + newer_hint: what to do when a newer version than the pin is installed
    + pins_why: why the versions are pinned: the apt preferences file's comment (its
      lines are kept as given)
    """

    component: str
    pinned_in: str
    mirror_setting: str
    subject: str
    newer_hint: str
    pins_why: str
    leave_out: str = ""

    def unusable_hint(self, mirror: str | None) -> str:
        """What to do when a repository cannot be used (the end of every such message)."""
        if mirror:
            steps = [f"check that {self.mirror_setting} ({mirror}) answers and mirrors it"]
        else:
            steps = [
                "check the host's network or apt proxy",
                f"set {self.mirror_setting} to a mirror of it",
            ]
        if self.leave_out:
            steps.append(self.leave_out)
        if len(steps) == 1:
            return steps[0]
        return ", ".join(steps[:-1]) + ", or " + steps[-1]


@dataclass(frozen=True)
class AptSource:
    """One vendor apt repository and the packages kubi installs from it.

    + name: short name (file names, messages)
    + url: upstream base URL of the repository
    + suite, components: the rest of the ``deb`` line
    + key_url: where the vendor publishes its signing key
    + fingerprint: the key's pinned primary fingerprint
    + pins: package -> apt version pin (``6.1.*``, ``2.15.0``): what to install
    + owner: the component using it (its messages' advice)
    + keyring, sources_path: where the key and the sources file go (defaults by name)
    """

    name: str
    url: str
    suite: str
    components: str
    key_url: str
    fingerprint: str
    pins: dict[str, str] = field(hash=False)
    owner: Owner
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
        if self.flat:
            return f"{self.suite.strip('/')}/InRelease".lstrip("/")
        return f"dists/{self.suite}/InRelease"

    @property
    def flat(self) -> bool:
        """A flat repository (pkgs.k8s.io): the suite is a path ending in '/', no components."""
        return self.suite.endswith("/")


# --- how a host asks for a URL -------------------------------------------------------------


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
    """How the host asks for `url` (apt and the key download alike)."""
    return through_proxy(mirrored(url, mirror), proxy)


def release_url(source: AptSource, mirror: str | None) -> str:
    """The first file apt fetches, upstream or on the mirror: a reachability check before a
    run asks for it (any HTTP answer means reachable)."""
    return f"{mirrored(source.url, mirror).rstrip('/')}/{source.release_file}"


def upstream_hosts(sources: list[AptSource]) -> list[str]:
    """Every host name the sources download from (repositories and keys), e.g. for a
    proxy's or a firewall's allow list."""
    names = []
    for source in sources:
        names += [urllib.parse.urlsplit(u).hostname or "" for u in (source.url, source.key_url)]
    return list(dict.fromkeys(names))


# --- files ---------------------------------------------------------------------------------


def sources_list(source: AptSource, mirror: str | None, proxy: str | None) -> str:
    """The repository's sources.list.d file."""
    base = host_url(source.url, mirror, proxy).rstrip("/") + "/"
    how = (
        f"mirror {mirror}"
        if mirror
        else ("apt-cacher-ng HTTPS remapping through " + proxy if proxy else "upstream")
    )
    return (
        f"# Managed by kubi ({source.owner.component}): {source.name}, signed by "
        f"{source.fingerprint}, via {how}.\n"
        f"deb [signed-by={source.keyring}] {base} {source.suite}"
        + (f" {source.components}" if source.components else "")
        + "\n"
    )


def apt_preferences(sources: list[AptSource]) -> str:
    """Pins that keep every package at the platform's version, even on `dist-upgrade`.

    One file per component: every source must have the same owner.
    """
    owners = {source.owner for source in sources}
    if len(owners) != 1:
        raise ValueError("apt_preferences: give the sources of exactly one owner")
    (owner,) = owners
    why = owner.pins_why.strip("\n").splitlines()
    header = f"# Managed by kubi ({owner.component}): {why[0]}\n"
    blocks = [header + "".join(f"# {line}\n" for line in why[1:])]
    for source in sources:
        for package, pin in source.pins.items():
            blocks.append(f"Package: {package}\nPin: version {pin}\nPin-Priority: 1001\n")
    return "\n".join(blocks)


# --- commands a deploy runs on the host ----------------------------------------------------


def _sh(script: str) -> str:
    return "sh -c " + shlex.quote(script)


def key_install_command(source: AptSource, mirror: str | None, proxy: str | None) -> str:
    """Download the signing key and keep only the pinned key, or fail with one clear line."""
    url = host_url(source.key_url, mirror, proxy)
    q = shlex.quote
    via = f" --proxy {q(proxy)}" if proxy and not url.startswith("https://") else ""
    refused = (
        f"kubi: repository {source.name}: the key at {url} has no key {source.fingerprint} "
        f"(pinned in {source.owner.pinned_in}); refusing it: check that the mirror or proxy "
        "serves the vendor's key"
    )
    unreachable = (
        f"kubi: repository {source.name}: cannot download its signing key from {url}"
        f"{f' through {proxy}' if via else ''}"
    )
    hint = source.owner.unusable_hint(mirror)
    return _sh(
        "tmp=$(mktemp -d) || exit 1; "
        'trap \'GNUPGHOME="$tmp" gpgconf --kill all 2>/dev/null; rm -rf "$tmp"\' EXIT; '
        # every error is tried again: a package proxy busy with every node at once resets
        # or refuses a connection now and then (the lab lost nodes to one such refusal)
        f"if ! err=$(curl -fsSL --retry 5 --retry-delay 2 --retry-all-errors "
        f"--connect-timeout 20 --max-time 120{via} "
        f'-o "$tmp/key" {q(url)} 2>&1); then '
        f'printf \'%s (%s); %s\\n\' {q(unreachable)} "$(echo "$err" | tail -n 1)" {q(hint)} >&2; '
        "exit 1; fi; "
        'GNUPGHOME="$tmp" gpg --batch --quiet --import "$tmp/key" >/dev/null 2>&1; '
        f'GNUPGHOME="$tmp" gpg --batch --export {source.fingerprint} '
        '> "$tmp/keyring.gpg" 2>/dev/null; '
        f'if [ ! -s "$tmp/keyring.gpg" ]; then echo {q(refused)} >&2; exit 1; fi; '
        f'install -D -m 644 "$tmp/keyring.gpg" {q(source.keyring)}'
    )


def apt_get(arguments: str, env: str = "") -> str:
    """Shell running ``apt-get <arguments>`` (already quoted) that waits while another apt
    holds a lock it needs (`APT_LOCK_TRIES`); apt's output goes to stdout on success and
    to stderr on failure. `env`: extra environment (``NAME=value`` words)."""
    command = f"{env} {APT_ENV} apt-get {arguments}".strip()
    return (
        f"{{ ( i=0; while :; do o=$({command} 2>&1) && {{ printf '%s\\n' \"$o\"; exit 0; }}; "
        "case $o in *'Could not get lock'*) i=$((i+1)); "
        f"if [ $i -lt {APT_LOCK_TRIES} ]; then sleep 2; continue; fi;; esac; "
        "printf '%s\\n' \"$o\" >&2; exit 1; done ); }"
    )


def repository_check_command(source: AptSource, mirror: str | None, proxy: str | None) -> str:
    """Refresh this repository's package list alone; on failure print one line naming it.

    `apt-get update` only warns (and exits 0) when a repository is unreachable:
    ``--error-on=any`` makes it fail, and only this repository's list is read and kept.
    """
    shown = host_url(source.url, mirror, proxy)
    where = f"{shown} through {proxy}" if proxy else shown
    head = f"kubi: repository {source.name} ({where}) cannot be used from this host"
    hint = source.owner.unusable_hint(mirror)
    options = (
        f"-o Dir::Etc::sourcelist={shlex.quote(source.sources_path)} -o Dir::Etc::sourceparts=- "
        "-o APT::Get::List-Cleanup=0 -o Acquire::Retries=1 "
        "-o Acquire::http::Timeout=30 -o Acquire::https::Timeout=30"
    )
    return _sh(
        f"if ! out=$({apt_get(f'-q update --error-on=any {options}')} 2>&1); "
        "then reason=$(printf '%s\\n' \"$out\" | grep -m 1 '^E: ' | cut -c 4- | tr -s ' '); "
        f"printf '%s: %s; %s\\n' {shlex.quote(head)} \"${{reason:-apt-get update failed}}\" "
        f"{shlex.quote(hint)} >&2; exit 1; fi"
    )


# --- decisions from facts ------------------------------------------------------------------


_KEYRINGS = r"""
for f in {paths}; do
  echo "keyring=$f"
  if [ -s "$f" ]; then
    t=$(mktemp -d)
    GNUPGHOME="$t" gpg --batch --with-colons --show-keys "$f" 2>/dev/null \
      | grep -E '^(pub|sub|fpr):'
    GNUPGHOME="$t" gpgconf --kill all 2>/dev/null
    rm -rf "$t"
  fi
done
"""


def keyrings_script(keyrings: tuple[str, ...]) -> str:
    """Shell for a fact: what each keyring holds (`parse_keyrings` reads its output)."""
    return _KEYRINGS.format(paths=" ".join(shlex.quote(p) for p in keyrings))


def parse_keyrings(output: list[str]) -> dict[str, dict | None]:
    """Keyring path -> None when absent, else its primary keys' ``fingerprints`` and, for
    each key that may sign (not revoked), ``signing_until`` (epoch seconds, None: never)."""
    keyrings: dict[str, dict | None] = {}
    current: dict | None = None
    path = last_record = ""
    for line in output:
        if line.startswith("keyring="):
            current = None
            path = line[len("keyring=") :]
            keyrings[path] = None
            continue
        fields = line.split(":")
        record = fields[0]
        if record in ("pub", "sub") and path:
            if current is None:
                current = {"fingerprints": [], "signing_until": []}
                keyrings[path] = current
            validity, expires, capabilities = fields[1], fields[6], fields[11]
            # Lower-case letters are this (sub)key's own capabilities.
            if "s" in capabilities and validity != "r":
                current["signing_until"].append(int(expires) if expires else None)
            last_record = record
        elif record == "fpr" and current is not None and last_record == "pub":
            current["fingerprints"].append(fields[9])
            last_record = "fpr"
    return keyrings


def keyring_ok(info: dict | None, fingerprint: str, now: float) -> bool:
    """Whether an installed keyring holds the pinned, still valid key.

    `info` is what a keyring fact reports for one file: ``None`` when absent, else
    ``{"fingerprints": [primary fingerprints], "signing_until": [epoch seconds or None]}``.
    """
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


def packages_to_install(sources: list[AptSource], installed: dict[str, list[str]]) -> list[str]:
    """Packages missing or older than their pin. A newer one is an error: kubi never
    downgrades (a data store's files, for one, may not be readable by an older version)."""
    todo = []
    for source in sources:
        for package, pin in source.pins.items():
            versions = installed.get(package) or []
            if any(pin_matches(v, pin) for v in versions):
                continue
            newer = [v for v in versions if _version_key(v) > _version_key(pin.rstrip(".*"))]
            if newer:
                raise ValueError(
                    f"{package} {newer[0]} is installed, newer than the platform's pin {pin} "
                    f"(versions.*): kubi does not downgrade {source.owner.subject}; "
                    f"{source.owner.newer_hint}"
                )
            todo.append(package)
    return todo

"""Vendor apt sources (kubi.aptsource): URL forms, and keys and repository checks run for
real on 127.0.0.1.

A vendor is played locally: a signing key made here, a signed apt repository (InRelease),
served by a small HTTP server that answers both as a mirror (apt-mirror layout) and as an
apt-cacher-ng proxy (``GET http://HTTPS///host/path``). The deploy's own commands run
against it: the key download keeps only the pinned key, apt accepts the repository with
that keyring, and every failure prints one line naming the repository. apt works in
temporary folders (APT_CONFIG) so this machine's package lists are never touched.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from facts.graylog import LogStackState
from kubi import aptsource, graylog
from kubi.aptsource import AptSource, Owner
from kubi.config import Versions

from .localrun import LocalHost

needs_tools = pytest.mark.skipif(
    not (shutil.which("gpg") and shutil.which("apt-get") and shutil.which("curl")),
    reason="needs gpg, curl and apt-get (Debian: apt-get install gnupg curl)",
)

KEY_URL = "https://keys.vendor.test/archive-key.asc"
REPO_URL = "https://repo.vendor.test/apt"
# Another component's words: what it says must come from its Owner, never from Graylog's.
OTHER = Owner(
    component="vendor",
    pinned_in="kubi/vendor.py",
    mirror_setting="vendor.apt_mirror",
    subject="the vendor's packages",
    newer_hint="set versions.vendor to the installed one",
    pins_why="the vendor's packages stay at versions.vendor.",
)


def test_url_forms():
    url = "https://repo.mongodb.org/apt/debian"
    assert aptsource.host_url(url, None, None) == url
    assert aptsource.host_url(url, None, "http://p:3142") == (
        "http://HTTPS///repo.mongodb.org/apt/debian"
    )
    assert aptsource.host_url(url, "http://m/x/", None) == "http://m/x/repo.mongodb.org/apt/debian"
    assert aptsource.host_url(url, "http://m/x", "http://p:3142") == (
        "http://m/x/repo.mongodb.org/apt/debian"  # plain http: the proxy needs no remapping
    )
    assert aptsource.host_url(url, "https://m/x", "http://p:3142") == (
        "http://HTTPS///m/x/repo.mongodb.org/apt/debian"
    )


def test_owner_hints_with_and_without_a_way_to_leave_the_packages_out():
    assert graylog.OWNER.unusable_hint(None) == (
        "check the host's network or apt proxy, set graylog.apt_mirror to a mirror of it, "
        "or set graylog.install = false to leave the log stack out"
    )
    assert OTHER.unusable_hint(None) == (
        "check the host's network or apt proxy, or set vendor.apt_mirror to a mirror of it"
    )
    assert OTHER.unusable_hint("http://m") == (
        "check that vendor.apt_mirror (http://m) answers and mirrors it"
    )


def test_every_message_and_header_comes_from_the_owner(tmp_path):
    source = AptSource(
        name="vendor", url=REPO_URL, suite="stable", components="main", key_url=KEY_URL,
        fingerprint="AB" * 20, pins={"vendor-server": "1.*"}, owner=OTHER,
    )  # fmt: skip
    texts = [
        aptsource.sources_list(source, None, None),
        aptsource.apt_preferences([source]),
        aptsource.key_install_command(source, None, None),
        aptsource.repository_check_command(source, None, "http://p:3142"),
    ]
    assert texts[0].startswith("# Managed by kubi (vendor): vendor, signed by ABAB")
    assert texts[1].startswith(
        "# Managed by kubi (vendor): the vendor's packages stay at versions.vendor.\n\n"
    )
    assert "(pinned in kubi/vendor.py)" in texts[2]
    assert "or set vendor.apt_mirror to a mirror of it" in texts[3]
    for text in texts:
        assert "graylog" not in text and "log stack" not in text
    with pytest.raises(ValueError) as newer:
        aptsource.packages_to_install([source], {"vendor-server": ["2.0"]})
    assert str(newer.value).endswith(
        "kubi does not downgrade the vendor's packages; set versions.vendor to the installed one"
    )


def test_preferences_are_one_owners():
    mine = graylog.apt_sources(Versions())
    other = AptSource(
        name="vendor", url=REPO_URL, suite="stable", components="main", key_url=KEY_URL,
        fingerprint="AB" * 20, pins={"vendor-server": "1.*"}, owner=OTHER,
    )  # fmt: skip
    with pytest.raises(ValueError, match="exactly one owner"):
        aptsource.apt_preferences([*mine, other])


def test_release_url_for_reachability_checks():
    [mongodb, *_] = graylog.apt_sources(Versions())
    assert aptsource.release_url(mongodb, None) == (
        "https://repo.mongodb.org/apt/debian/dists/bookworm/mongodb-org/7.0/InRelease"
    )
    assert aptsource.release_url(mongodb, "http://m/a/") == (
        "http://m/a/repo.mongodb.org/apt/debian/dists/bookworm/mongodb-org/7.0/InRelease"
    )


def gpg(home: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["gpg", "--batch", "--homedir", str(home), *args],
        capture_output=True,
        check=True,
        **kwargs,
    )


def new_key(home: Path, uid: str, expiry: str = "2y") -> str:
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    gpg(home, "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", expiry)
    listing = gpg(home, "--with-colons", "--list-keys", uid, text=True).stdout
    return next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """A vendor key and an impostor key, each in its own GnuPG home."""
    root = tmp_path_factory.mktemp("gpg")
    vendor = new_key(root / "vendor", "Vendor Archive <archive@vendor.test>")
    impostor = new_key(root / "impostor", "Impostor <evil@vendor.test>")
    yield {"vendor": (root / "vendor", vendor), "impostor": (root / "impostor", impostor)}
    for name in ("vendor", "impostor"):
        subprocess.run(["gpgconf", "--homedir", str(root / name), "--kill", "all"], check=False)


def armored(keys, *names: str) -> bytes:
    return b"".join(gpg(keys[n][0], "--armor", "--export", keys[n][1]).stdout for n in names)


def signed_repository(root: Path, keys, signer: str = "vendor") -> None:
    """An empty signed apt repository (suite stable, component main) under `root`."""
    packages = root / "dists/stable/main/binary-amd64/Packages"
    packages.parent.mkdir(parents=True, exist_ok=True)
    packages.write_bytes(b"")
    digest = hashlib.sha256(b"").hexdigest()
    release = (
        "Origin: vendor\nLabel: vendor\nSuite: stable\nCodename: stable\n"
        f"Date: {formatdate(time.time(), usegmt=True)}\n"
        "Architectures: amd64\nComponents: main\n"
        f"SHA256:\n {digest} 0 main/binary-amd64/Packages\n"
    )
    (root / "dists/stable/Release").write_text(release)
    home, fpr = keys[signer]
    dists = root / "dists/stable"
    gpg(home, "--yes", "--local-user", fpr, "--clearsign",
        "--output", str(dists / "InRelease"), str(dists / "Release"))  # fmt: skip


class Vendor:
    """Serves a tree of files as a mirror (/mirror/<host>/<path>) and as an apt-cacher-ng
    proxy (absolute request ``http://HTTPS///<host>/<path>``); records request lines."""

    def __init__(self, root: Path):
        self.root = root
        self.requests: list[str] = []
        vendor = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                vendor.requests.append(self.path)
                if self.path.startswith("http://HTTPS///"):
                    relative = self.path[len("http://HTTPS///") :]
                elif self.path.startswith("/mirror/"):
                    relative = self.path[len("/mirror/") :]
                else:
                    relative = ""
                target = (vendor.root / relative).resolve()
                if relative and target.is_file() and vendor.root in target.parents:
                    data = target.read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                else:
                    self.send_error(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def vendor(tmp_path, keys):
    root = tmp_path / "www"
    (root / "keys.vendor.test").mkdir(parents=True)
    (root / "keys.vendor.test/archive-key.asc").write_bytes(armored(keys, "impostor", "vendor"))
    signed_repository(root / "repo.vendor.test/apt", keys)
    server = Vendor(root.resolve())
    yield server
    server.close()


@pytest.fixture
def apt(tmp_path):
    """apt in temporary folders; returns a function that runs a command with it."""
    base = tmp_path / "apt"
    for sub in ("lists/partial", "cache/archives/partial"):
        (base / sub).mkdir(parents=True)

    def run(command: str, proxy: str | None = None) -> subprocess.CompletedProcess:
        (base / "apt.conf").write_text(
            f'Dir::State::Lists "{base}/lists";\nDir::Cache "{base}/cache";\n'
            f'Acquire::http::Proxy "{proxy or "DIRECT"}";\nAPT::Sandbox::User "root";\n'
        )
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "APT_CONFIG": str(base / "apt.conf")}
        return subprocess.run(
            ["sh", "-c", command], capture_output=True, text=True, timeout=120, env=env
        )

    return run


def vendor_source(tmp_path, keys, owner: Owner = graylog.OWNER) -> AptSource:
    return AptSource(
        name="vendor",
        url=REPO_URL,
        suite="stable",
        components="main",
        key_url=KEY_URL,
        fingerprint=keys["vendor"][1],
        pins={"vendor-server": "1.*"},
        owner=owner,
        keyring=str(tmp_path / "keyrings/kubi-vendor.gpg"),
        sources_path=str(tmp_path / "kubi-vendor.list"),
    )


def fingerprints(keyring: str) -> list[str]:
    info = LocalHost().get_fact(LogStackState, keyrings=(keyring,))["keyrings"][keyring]
    return info["fingerprints"] if info else []


@needs_tools
def test_key_from_the_mirror_keeps_only_the_pinned_key_and_apt_trusts_it(
    tmp_path, keys, vendor, apt
):
    repo = vendor_source(tmp_path, keys)
    mirror = f"{vendor.url}/mirror"
    installed = apt(aptsource.key_install_command(repo, mirror, None))
    assert installed.returncode == 0, installed.stderr
    # The served file also holds the impostor's key: only the pinned one is kept.
    assert fingerprints(repo.keyring) == [keys["vendor"][1]]
    assert vendor.requests == ["/mirror/keys.vendor.test/archive-key.asc"]

    Path(repo.sources_path).write_text(aptsource.sources_list(repo, mirror, None))
    checked = apt(aptsource.repository_check_command(repo, mirror, None))
    assert checked.returncode == 0, checked.stderr
    assert "/mirror/repo.vendor.test/apt/dists/stable/InRelease" in vendor.requests


def hold_apt_lock(path: Path, seconds: float) -> None:
    """Hold apt's lock on `path` (as another apt-get would, an fcntl lock) for `seconds`."""
    handle = path.open("w")
    fcntl.lockf(handle, fcntl.LOCK_EX)

    def release():
        fcntl.lockf(handle, fcntl.LOCK_UN)
        handle.close()

    threading.Timer(seconds, release).start()


@needs_tools
def test_apt_waits_while_another_apt_holds_the_package_lists(tmp_path, keys, vendor, apt):
    # apt-daily at a host's boot holds the lists: apt-get itself fails at once on that lock.
    repo = vendor_source(tmp_path, keys)
    mirror = f"{vendor.url}/mirror"
    assert apt(aptsource.key_install_command(repo, mirror, None)).returncode == 0
    Path(repo.sources_path).write_text(aptsource.sources_list(repo, mirror, None))
    hold_apt_lock(tmp_path / "apt/lists/lock", 3)
    start = time.monotonic()
    checked = apt(aptsource.repository_check_command(repo, mirror, None))
    assert checked.returncode == 0, checked.stderr
    assert time.monotonic() - start >= 2.5
    assert "/mirror/repo.vendor.test/apt/dists/stable/InRelease" in vendor.requests


@needs_tools
def test_apt_lock_held_too_long_fails_in_one_line_naming_the_lock(
    tmp_path, keys, vendor, apt, monkeypatch
):
    monkeypatch.setattr(aptsource, "APT_LOCK_TRIES", 2)
    repo = vendor_source(tmp_path, keys)
    mirror = f"{vendor.url}/mirror"
    Path(repo.sources_path).write_text(aptsource.sources_list(repo, mirror, None))
    hold_apt_lock(tmp_path / "apt/lists/lock", 8)
    start = time.monotonic()
    checked = apt(aptsource.repository_check_command(repo, mirror, None))
    assert checked.returncode == 1
    assert 1.5 <= time.monotonic() - start < 6
    assert checked.stderr.startswith("kubi: repository vendor (")
    assert "Could not get lock" in checked.stderr and len(checked.stderr.splitlines()) == 1
    assert vendor.requests == []


@needs_tools
def test_a_failure_other_than_a_lock_is_not_tried_again(apt):
    start = time.monotonic()
    result = apt(aptsource.apt_get("-q --no-such-option update"))
    assert result.returncode == 1 and "E: " in result.stderr
    assert time.monotonic() - start < 1.5


@needs_tools
def test_a_key_without_the_pinned_fingerprint_is_refused(tmp_path, keys, vendor, apt):
    repo = vendor_source(tmp_path, keys)
    (vendor.root / "keys.vendor.test/archive-key.asc").write_bytes(armored(keys, "impostor"))
    result = apt(aptsource.key_install_command(repo, f"{vendor.url}/mirror", None))
    assert result.returncode == 1
    url = f"{vendor.url}/mirror/keys.vendor.test/archive-key.asc"
    assert result.stderr.splitlines() == [
        f"kubi: repository vendor: the key at {url} has no key {keys['vendor'][1]} (pinned in "
        "kubi/graylog.py); refusing it: check that the mirror or proxy serves the vendor's key"
    ]
    assert not Path(repo.keyring).exists()


@needs_tools
def test_https_repositories_go_through_apt_cacher_ng_as_http_https(tmp_path, keys, vendor, apt):
    repo = vendor_source(tmp_path, keys)
    proxy = vendor.url  # plays the repository host's apt-cacher-ng
    installed = apt(aptsource.key_install_command(repo, None, proxy))
    assert installed.returncode == 0, installed.stderr
    assert vendor.requests == ["http://HTTPS///keys.vendor.test/archive-key.asc"]

    sources = aptsource.sources_list(repo, None, proxy)
    assert f"deb [signed-by={repo.keyring}] http://HTTPS///repo.vendor.test/apt/ stable main" in (
        sources
    )
    Path(repo.sources_path).write_text(sources)
    checked = apt(aptsource.repository_check_command(repo, None, proxy), proxy=proxy)
    assert checked.returncode == 0, checked.stderr
    # apt asked the proxy for the remapped URL; the proxy fetches it over HTTPS upstream.
    assert "http://HTTPS///repo.vendor.test/apt/dists/stable/InRelease" in vendor.requests


@needs_tools
@pytest.mark.parametrize(
    ("owner", "hint"),
    [
        (
            graylog.OWNER,
            "check that graylog.apt_mirror (http://127.0.0.1:9/mirror) answers and mirrors it, "
            "or set graylog.install = false to leave the log stack out",
        ),
        (OTHER, "check that vendor.apt_mirror (http://127.0.0.1:9/mirror) answers and mirrors it"),
    ],
)
def test_unreachable_repository_stops_with_one_line_naming_it(tmp_path, keys, apt, owner, hint):
    repo = vendor_source(tmp_path, keys, owner=owner)
    mirror = "http://127.0.0.1:9/mirror"  # the discard port: nothing answers
    key = apt(aptsource.key_install_command(repo, mirror, None))
    assert key.returncode == 1
    [line] = key.stderr.splitlines()
    assert line.startswith(
        "kubi: repository vendor: cannot download its signing key from "
        "http://127.0.0.1:9/mirror/keys.vendor.test/archive-key.asc (curl: (7) "
    )
    assert line.endswith(f"; {hint}")

    Path(repo.sources_path).write_text(aptsource.sources_list(repo, mirror, None))
    checked = apt(aptsource.repository_check_command(repo, mirror, None))
    assert checked.returncode == 1
    [line] = checked.stderr.splitlines()
    assert line.startswith(
        "kubi: repository vendor (http://127.0.0.1:9/mirror/repo.vendor.test/apt) cannot be "
        "used from this host: Failed to fetch "
        "http://127.0.0.1:9/mirror/repo.vendor.test/apt/dists/stable/InRelease"
    )
    assert "Connection refused" in line or "Could not connect" in line
    assert line.endswith(f"; {hint}")


@needs_tools
def test_repository_signed_by_another_key_is_refused_in_one_line(tmp_path, keys, vendor, apt):
    signed_repository(vendor.root / "repo.vendor.test/apt", keys, signer="impostor")
    repo = vendor_source(tmp_path, keys)
    mirror = f"{vendor.url}/mirror"
    assert apt(aptsource.key_install_command(repo, mirror, None)).returncode == 0
    Path(repo.sources_path).write_text(aptsource.sources_list(repo, mirror, None))
    checked = apt(aptsource.repository_check_command(repo, mirror, None))
    assert checked.returncode == 1
    [line] = checked.stderr.splitlines()
    assert line.startswith("kubi: repository vendor (")
    assert "NO_PUBKEY" in line or "not signed" in line


@needs_tools
def test_keyring_fact_reports_fingerprints_and_validity(tmp_path, keys, vendor, apt):
    repo = vendor_source(tmp_path, keys)
    absent = str(tmp_path / "keyrings/absent.gpg")
    apt(aptsource.key_install_command(repo, f"{vendor.url}/mirror", None))
    state = LocalHost().get_fact(LogStackState, keyrings=(repo.keyring, absent))
    assert state["keyrings"][absent] is None
    info = state["keyrings"][repo.keyring]
    assert info["fingerprints"] == [keys["vendor"][1]]
    [until] = info["signing_until"]  # the key made here expires in two years
    now = time.time()
    assert now + 700 * 86400 < until < now + 740 * 86400
    assert aptsource.keyring_ok(info, keys["vendor"][1], now)
    assert not aptsource.keyring_ok(info, keys["impostor"][1], now)  # not the pinned key
    assert not aptsource.keyring_ok(info, keys["vendor"][1], until - 86400)  # renewal due
    assert not aptsource.keyring_ok(None, keys["vendor"][1], now)  # absent
    with open("/proc/sys/vm/max_map_count") as live:
        assert state["max_map_count"] == int(live.read())


def test_keyring_fact_parsing_of_subkeys_and_revocations():
    output = [
        "keyring=/k.gpg",
        "pub:-:4096:1:AAAA:1500000000:::-:::scSC::::::23::0:",
        "fpr:::::::::PRIMARYFPR:",
        "sub:r:4096:1:BBBB:1500000000:1600000000:::::s::::::23:",  # revoked signing subkey
        "fpr:::::::::REVOKEDSUB:",
        "sub:-:4096:1:CCCC:1500000000:1900000000:::::s::::::23:",
        "fpr:::::::::SIGNINGSUB:",
        "sub:-:4096:1:DDDD:1500000000::::::e::::::23:",  # encryption only
        "fpr:::::::::ENCRYPTSUB:",
        "keyring=/absent.gpg",
        "max_map_count=65530",
    ]
    assert LogStackState().process(output) == {
        "keyrings": {
            "/k.gpg": {"fingerprints": ["PRIMARYFPR"], "signing_until": [None, 1900000000]},
            "/absent.gpg": None,
        },
        "max_map_count": 65530,
    }

"""The lab's Kubernetes repository and mirror server (kubi.lab.kubernetes, kubi.lab.mirror),
and `kubi lab up`'s hook, built from stand-in binaries (tests/kubernetes_stand_ins.py).

What is tested is real: kubi's code, dpkg-deb, apt-ftparchive, gpg, apt-get, and
production's key download and sources file (kubi.aptsource) against the mirror server.
tests/lab/test_kubernetes_build.py builds from the real binaries.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from kubi import aptsource
from kubi.lab import images, kubernetes, mirror, plan
from kubi.lab.plan import LabError
from tests.apt_repo import apt, keyring_from
from tests.kubernetes_stand_ins import ARCHIVES, CORE_DNS_LINE, run, stand_ins

IN_CI = os.environ.get("CI") == "true"
TOOLS = ("dpkg-deb", "apt-ftparchive", "gpg", "gpgv", "apt-get", "curl", "skopeo")
MISSING = [tool for tool in TOOLS if shutil.which(tool) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING) and not IN_CI,
    reason=f"needs {', '.join(MISSING)} (apt-get install apt-utils skopeo; scripts/bootstrap does)",
)

DEB_DIR = "pkgs.k8s.io/core:/stable:/v1.33/deb"


class Build:
    """A lab build in a folder: binaries, mirror root, key, work folder, and what it logged."""

    def __init__(self, base: Path):
        self.binaries = stand_ins(base / "bin")
        self.root = base / "mirror"
        self.home = base / "work" / "gnupg"
        self.work = base / "work"
        self.lines: list[str] = []

    def repository(self) -> kubernetes.Repository:
        digests = images.FileDigests(self.work / "digests.json")
        return kubernetes.ensure_repository(
            self.binaries, self.root, self.home, self.work, digests, self.lines.append
        )


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Build, kubernetes.Repository]:
    build = Build(tmp_path_factory.mktemp("lab"))
    return build, build.repository()


def fields(control: str) -> dict[str, str]:
    found = {}
    for line in control.splitlines():
        if line and not line.startswith(" ") and ":" in line:
            key, _, value = line.partition(":")
            found[key.strip()] = value.strip()
    return found


# --- names ---------------------------------------------------------------------------------


def test_versions_and_places_follow_upstream():
    assert kubernetes.package_version("v1.33.3") == "1.33.3-1.1"
    assert kubernetes.package_version("v1.34.0-rc.1") == "1.34.0~rc.1-1.1"
    assert kubernetes.repository_url("v1.33.3") == "https://pkgs.k8s.io/core:/stable:/v1.33/deb/"
    assert kubernetes.repository_path("v1.33.3") == DEB_DIR
    with pytest.raises(LabError, match="not a Kubernetes version"):
        kubernetes.minor_of("1.33")


# --- the packages ---------------------------------------------------------------------------


def test_packages_are_shaped_like_upstreams(built, tmp_path):
    build, repository = built
    names = ("kubeadm", "kubelet", "kubectl")
    debs = {p: repository.path / f"amd64/{p}_1.33.3-1.1_amd64.deb" for p in names}
    expected_files = {
        "kubeadm": {
            "./usr/bin/kubeadm", "./usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf",
        },
        "kubelet": {
            "./usr/bin/kubelet", "./usr/lib/systemd/system/kubelet.service",
            "./etc/default/kubelet", "./var/lib/kubelet/.kubelet-keep",
            "./etc/kubernetes/manifests/.kubelet-keep",
        },
        "kubectl": {"./usr/bin/kubectl"},
    }  # fmt: skip
    depends = {
        "kubeadm": None,
        "kubelet": "iptables (>= 1.4.21), iproute2, mount, conntrack, util-linux, ethtool",
        "kubectl": None,
    }
    for name, deb in debs.items():
        info = fields(run("dpkg-deb", "--field", deb))
        assert (info["Package"], info["Version"], info["Architecture"]) == (
            name, "1.33.3-1.1", "amd64",
        )  # fmt: skip
        assert info.get("Depends") == depends[name]
        listing = [line.split() for line in run("dpkg-deb", "--contents", deb).splitlines()]
        files = {words[-1] for words in listing if not words[0].startswith("d")}
        assert files == expected_files[name]
        assert {words[1] for words in listing} == {"root/root"}
        mode = {words[-1]: words[0] for words in listing}[f"./usr/bin/{name}"]
        assert mode == "-rwxr-xr-x"
    unpacked = tmp_path / "fs"
    for deb in debs.values():
        run("dpkg-deb", "-x", deb, unpacked)
    unit = (unpacked / "usr/lib/systemd/system/kubelet.service").read_text()
    for line in (
        "ExecStart=/usr/bin/kubelet",
        "Restart=always",
        "RestartSec=10",
        "Wants=network-online.target",
        "After=network-online.target",
        "WantedBy=multi-user.target",
    ):
        assert line in unit.splitlines()
    drop_in = (unpacked / "usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf").read_text()
    assert drop_in.splitlines()[-2:] == [
        "ExecStart=",
        "ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS "
        "$KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS",
    ]
    for line in (
        'Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/'
        'bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"',
        'Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"',
        "EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env",
        "EnvironmentFile=-/etc/default/kubelet",
    ):
        assert line in drop_in.splitlines()
    assert (unpacked / "usr/bin/kubelet").read_bytes() == (build.binaries / "kubelet").read_bytes()
    control = tmp_path / "control"
    run("dpkg-deb", "--control", debs["kubelet"], control)
    assert (control / "conffiles").read_text() == "/etc/default/kubelet\n"
    assert "systemctl --no-reload preset kubelet.service" in (control / "postinst").read_text()


# --- the repository, as apt sees it ---------------------------------------------------------


def flat_source(url: str, keyring: Path) -> str:
    """The sources.list line of a flat repository (pkgs.k8s.io's kind)."""
    return f"deb [signed-by={keyring}] {url} /\n"


def test_apt_reads_the_signed_repository(built, tmp_path):
    build, repository = built
    keyring = keyring_from(
        repository.path / "Release.key", repository.fingerprint, tmp_path / "kubernetes.gpg"
    )
    sources = flat_source(f"file://{build.root}/{DEB_DIR}/", keyring)
    update = apt(tmp_path, sources, "apt-get", "update", "--error-on=any")
    assert update.returncode == 0, update.stdout + update.stderr
    for package in ("kubeadm", "kubelet", "kubectl"):
        policy = apt(tmp_path, sources, "apt-cache", "policy", package).stdout
        assert "Candidate: 1.33.3-1.1" in policy, policy
    show = apt(tmp_path, sources, "apt-cache", "show", "kubelet").stdout
    assert "Depends: iptables (>= 1.4.21), iproute2, mount, conntrack" in show


def test_apt_refuses_the_repository_signed_by_another_key(built, tmp_path):
    build, repository = built
    other = tmp_path / "other-gnupg"
    fingerprint = kubernetes.ensure_key(other)
    (tmp_path / "other.key").write_text(run("gpg", "--homedir", other, "--armor", "--export"))
    keyring = keyring_from(tmp_path / "other.key", fingerprint, tmp_path / "other.gpg")
    sources = flat_source(f"file://{build.root}/{DEB_DIR}/", keyring)
    update = apt(tmp_path, sources, "apt-get", "update", "--error-on=any")
    assert update.returncode != 0
    assert f"NO_PUBKEY {repository.fingerprint[-16:]}" in update.stdout + update.stderr


def test_the_pinned_fingerprint_is_the_key_that_signs(built, tmp_path):
    build, repository = built
    shown = run(
        "gpg",
        "--homedir",
        tmp_path,
        "--with-colons",
        "--show-keys",
        repository.path / "Release.key",
    )
    primary = next(line.split(":")[9] for line in shown.splitlines() if line.startswith("fpr:"))
    assert primary == repository.fingerprint == kubernetes.ensure_key(build.home)
    keyring = keyring_from(repository.path / "Release.key", primary, tmp_path / "k.gpg")
    for signed in (["InRelease"], ["Release.gpg", "Release"]):
        run("gpgv", "--keyring", keyring, *(repository.path / name for name in signed))
    assert (build.home.stat().st_mode & 0o777) == 0o700
    assert repository.url == f"http://10.77.0.1:3150/{DEB_DIR}/"


def test_a_deep_lab_folder_keeps_its_key_too(tmp_path):
    """gpg-agent's sockets cannot live deeper than about 100 bytes: a long KUBI_LAB_DIR
    still gets its key, in its own folder, made once."""
    home = tmp_path / ("deep-" * 16) / "kubernetes" / "gnupg"
    assert len(bytes(home)) > kubernetes.SOCKET_HOME_MAX
    fingerprint = kubernetes.ensure_key(home)
    assert kubernetes.ensure_key(home) == fingerprint
    assert (home / "pubring.kbx").is_file() and not (home / "pubring.kbx").is_symlink()
    listed = run("gpg", "--homedir", home, "--with-colons", "--list-keys")
    assert f"fpr:::::::::{fingerprint}:" in listed


def test_nothing_is_built_again_unless_an_input_changed(tmp_path):
    build = Build(tmp_path)
    repository = build.repository()
    files = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in repository.path.rglob("*")}
    build.lines.clear()
    again = build.repository()
    assert build.lines == []
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in again.path.rglob("*")} == files

    with open(build.binaries / "kubelet", "ab") as binary:
        binary.write(b"\0rebuilt")
    build.repository()
    assert len(build.lines) == 1 and "packages (kubelet) built" in build.lines[0]
    kubeadm = repository.path / "amd64/kubeadm_1.33.3-1.1_amd64.deb"
    kubelet = repository.path / "amd64/kubelet_1.33.3-1.1_amd64.deb"
    assert kubeadm.stat().st_ino == files[kubeadm][0]  # kept as it was
    assert kubelet.stat().st_mtime_ns != files[kubelet][1]
    unpacked = tmp_path / "fs"
    run("dpkg-deb", "-x", kubelet, unpacked)
    assert (unpacked / "usr/bin/kubelet").read_bytes().endswith(b"\0rebuilt")
    keyring = keyring_from(
        repository.path / "Release.key", repository.fingerprint, tmp_path / "k.gpg"
    )
    run("gpgv", "--keyring", keyring, repository.path / "InRelease")
    packages = (repository.path / "Packages").read_text()
    assert run("sha256sum", kubelet).split()[0] in packages


# --- the images ------------------------------------------------------------------------------


# --- the mirror server ----------------------------------------------------------------------


def kubernetes_source(repository: kubernetes.Repository, folder: Path) -> aptsource.AptSource:
    """pkgs.k8s.io as production describes a vendor repository, pinned to the lab's key."""
    owner = aptsource.Owner(
        component="test", pinned_in="the test", mirror_setting="test.mirror", subject="it",
        newer_hint="none", pins_why="test",
    )  # fmt: skip
    return aptsource.AptSource(
        name="kubernetes", url=repository.upstream, suite="/", components="",
        key_url=repository.upstream + "Release.key", fingerprint=repository.fingerprint,
        pins={}, owner=owner, keyring=str(folder / "kubernetes.gpg"),
        sources_path=str(folder / "kubernetes.list"),
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_mirror_serves_the_root_read_only_to_apt(built, tmp_path):
    build, repository = built
    port, run_dir = free_port(), tmp_path / "run"
    lines: list[str] = []
    mirror.start(build.root, lines.append, run_dir=run_dir, port=port, addresses=("127.0.0.1",))
    try:
        pid = mirror.server_pid(run_dir)
        assert pid is not None and lines == [
            f"lab: package mirror serving {build.root} on 127.0.0.1 port {port}"
        ]
        if os.geteuid() == 0:  # confined: in the mirror root, as nobody
            assert os.readlink(f"/proc/{pid}/root") == str(build.root)
            assert Path(f"/proc/{pid}").stat().st_uid == 65534
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/{DEB_DIR}/InRelease") as answer:
            assert answer.read() == (repository.path / "InRelease").read_bytes()
        for path, status in ((f"/{DEB_DIR}/", 404), ("/../../../etc/passwd", 404)):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(base + path)
            assert refused.value.code == status
        request = urllib.request.Request(f"{base}/{DEB_DIR}/Release", data=b"x", method="PUT")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request)
        assert refused.value.code == 405
        # What a host runs, from production's code: the key from the mirror, pinned, then
        # the repository's sources file and apt-get update through the mirror.
        source = kubernetes_source(repository, tmp_path)
        key = subprocess.run(
            aptsource.key_install_command(source, base, None), shell=True, capture_output=True,
            text=True, timeout=60, env={"PATH": plan.PATH_ENV, "LC_ALL": "C"},  # no proxy
        )  # fmt: skip
        assert key.returncode == 0, key.stderr
        sources = aptsource.sources_list(source, base, None)
        assert f"{base}/{DEB_DIR}/ /" in sources
        update = apt(tmp_path, sources, "apt-get", "update", "--error-on=any")
        assert update.returncode == 0, update.stdout + update.stderr
        download = apt(tmp_path, sources, "apt-get", "download", "kubeadm")
        assert download.returncode == 0, download.stdout + download.stderr
        assert (tmp_path / "kubeadm_1.33.3-1.1_amd64.deb").read_bytes() == (
            repository.path / "amd64/kubeadm_1.33.3-1.1_amd64.deb"
        ).read_bytes()
        mirror.start(build.root, lines.append, run_dir=run_dir, port=port, addresses=("127.0.0.1",))
        assert mirror.server_pid(run_dir) == pid and len(lines) == 1  # serving: left as it is
    finally:
        mirror.stop(run_dir)
    assert mirror.server_pid(run_dir) is None
    assert not Path(f"/proc/{pid}").exists()
    assert not mirror.serving(port, ("127.0.0.1",))


def test_mirror_listens_only_on_loopback_and_the_bridge(tmp_path):
    for addresses in (["0.0.0.0"], ["127.0.0.1", "10.77.0.2"], ["::"], []):
        with pytest.raises(SystemExit, match="refusing to listen"):
            mirror.serve(tmp_path, free_port(), addresses)
    assert mirror.ALLOWED_ADDRESSES == ("127.0.0.1", plan.GATEWAY)
    assert (plan.LAB_MIRROR_PORT, plan.LAB_MIRROR) == (3150, "http://10.77.0.1:3150")


def test_a_taken_port_is_named_with_the_log(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(LabError, match=f"port {port} \\(is the port taken\\?\\); see "):
            mirror.start(tmp_path, print, run_dir=tmp_path / "run", port=port,
                         addresses=("127.0.0.1",))  # fmt: skip
        assert time.monotonic() - started < 10  # the server's end is noticed at once
    assert "Address already in use" in (tmp_path / "run/log").read_text()
    assert mirror.server_pid(tmp_path / "run") is None


def test_stop_ends_only_the_mirror_server(tmp_path):
    """A pid file naming another process (stale, or the number reused) stops nothing."""
    other = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "pid").write_text(f"{other.pid}\n")
        assert mirror.server_pid(tmp_path) is None
        mirror.stop(tmp_path)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


# --- `kubi lab up`'s hook ---------------------------------------------------------------------


def test_up_without_binaries_says_so_in_one_line_and_builds_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(plan, "LAB_DIR", tmp_path / "lab")
    monkeypatch.setenv(kubernetes.BIN_ENV, str(tmp_path / "none"))
    stopped = []
    monkeypatch.setattr(mirror, "stop", lambda: stopped.append(True))  # not the machine's
    lines: list[str] = []
    assert kubernetes.ensure(lines.append) is None
    assert lines == [
        f"lab: no Kubernetes binaries in {tmp_path / 'none'} (KUBI_LAB_KUBERNETES_BIN); the "
        "cluster part of the lab is skipped; see docs/lab.md to build them"
    ]
    assert stopped == [True] and not (tmp_path / "lab").exists()
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "kubeadm").write_text("")
    monkeypatch.setenv(kubernetes.BIN_ENV, str(partial))
    lines.clear()
    assert kubernetes.ensure(lines.append) is None
    assert lines[0].startswith("lab: no kube-apiserver, kube-controller-manager, ")
    assert "pause among the Kubernetes binaries in" in lines[0] and len(lines) == 1


def test_up_with_binaries_builds_once_then_serves(tmp_path, monkeypatch):
    """`kubi lab up`'s hook, in a lab folder of the test's own: the mirror server it starts
    listens on a free loopback port here (never the lab's port or bridge)."""
    monkeypatch.setattr(plan, "LAB_DIR", tmp_path / "lab")
    monkeypatch.setenv(kubernetes.BIN_ENV, str(stand_ins(tmp_path / "bin")))
    net = tmp_path / "net"
    monkeypatch.setattr(kubernetes, "SYSFS_NET", net)
    with pytest.raises(LabError, match="bridge kubibr0 is not up"):
        kubernetes.ensure(print)
    (net / plan.BRIDGE).mkdir(parents=True)
    port, run_dir = free_port(), tmp_path / "run"
    real_start = mirror.start
    served = []

    def start(root, log):
        served.append(root)
        real_start(root, log, run_dir=run_dir, port=port, addresses=("127.0.0.1",))

    monkeypatch.setattr(mirror, "start", start)
    lines: list[str] = []
    try:
        made = kubernetes.ensure(lines.append)
        assert made is not None and served == [tmp_path / "lab/mirror"]
        assert made.repository.path == tmp_path / "lab/mirror" / DEB_DIR
        assert set(made.images) == set(ARCHIVES)
        assert all(p.parent == tmp_path / "lab/kubernetes/images" for p in made.images.values())
        assert made.repository.fingerprint == kubernetes.key_fingerprint()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/{DEB_DIR}/Release.key") as answer:
            assert answer.read() == (made.repository.path / "Release.key").read_bytes()
        lines.clear()
        again = kubernetes.ensure(lines.append)
        assert again == made
        assert lines == [CORE_DNS_LINE]
    finally:
        mirror.stop(run_dir)

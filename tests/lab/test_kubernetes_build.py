"""What `kubi lab up` makes from the real Kubernetes binaries ($KUBI_LAB_KUBERNETES_BIN): the
signed repository of kubeadm, kubelet and kubectl and the images kubeadm pulls, built into a
folder of the test's own (no lab host is needed, and the running lab is not touched).

Skips in one line when the folder lacks the binaries: the project never builds them
(docs/lab.md, "Kubernetes in the lab", says how to).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import time

import pytest

from kubi.lab import images, kubernetes
from tests.apt_repo import apt, keyring_from

BINARIES = kubernetes.bin_dir()
CLEAN = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
MISSING = kubernetes.missing_binaries(BINARIES)
pytestmark = [
    pytest.mark.skipif(
        bool(MISSING),
        reason=f"no Kubernetes binaries in {BINARIES} ({kubernetes.BIN_ENV}); see docs/lab.md",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="runs each image in a chroot: needs root"),
]


def sha256(data) -> str:
    digest = hashlib.sha256()
    while chunk := data.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def test_the_real_binaries_make_the_repository_and_the_images(tmp_path):
    version = kubernetes.kubeadm_version(BINARIES)
    work = tmp_path / "work"
    lines: list[str] = []
    digests = images.FileDigests(work / "digests.json")
    started = time.monotonic()
    repository = kubernetes.ensure_repository(
        BINARIES, tmp_path / "mirror", work / "gnupg", work, digests, lines.append
    )
    archives = images.ensure_images(BINARIES, version, work / "images", digests, lines.append)
    first = time.monotonic() - started

    # The packages: the folder's binaries, at the version kubeadm reports.
    unpacked = tmp_path / "fs"
    for name, package_version in repository.packages.items():
        deb = repository.path / f"amd64/{name}_{package_version}_amd64.deb"
        fields = subprocess.run(
            ["dpkg-deb", "--field", str(deb), "Package", "Version"], capture_output=True,
            text=True, check=True,
        ).stdout  # fmt: skip
        assert fields == f"Package: {name}\nVersion: {kubernetes.package_version(version)}\n"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
        with open(unpacked / "usr/bin" / name, "rb") as packaged:
            assert sha256(packaged) == digests.of(BINARIES / name)
    short = subprocess.run(
        [str(unpacked / "usr/bin/kubeadm"), "version", "-o", "short"], capture_output=True,
        text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert short == version

    # apt reads it, with the key pinned by its fingerprint.
    keyring = keyring_from(
        repository.path / "Release.key", repository.fingerprint, tmp_path / "kubernetes.gpg"
    )
    sources = f"deb [signed-by={keyring}] file://{repository.path}/ /\n"
    update = apt(tmp_path / "apt", sources, "apt-get", "update", "--error-on=any")
    assert update.returncode == 0, update.stdout + update.stderr
    policy = apt(tmp_path / "apt", sources, "apt-cache", "policy", "kubeadm").stdout
    assert f"Candidate: {kubernetes.package_version(version)}" in policy

    # The images: every one kubeadm lists but CoreDNS; each runs alone in its own root
    # (static binaries; kube-proxy's iptables with its libraries).
    wanted = images.kubeadm_images(BINARIES / "kubeadm", version)
    assert set(archives) == {ref for ref in wanted if "/coredns/" not in ref}
    says = {"etcd": "etcd Version: 3.5.1", "pause": "pause.c v3.10"}
    for ref, archive in archives.items():
        config = json.loads(
            subprocess.run(
                ["skopeo", "inspect", "--config", f"oci-archive:{archive}"], capture_output=True,
                text=True, check=True,
            ).stdout
        )["config"]  # fmt: skip
        name = ref.rsplit("/", 1)[1].split(":")[0]
        root = tmp_path / "roots" / name
        with tarfile.open(archive) as outer:
            index = json.load(outer.extractfile("index.json"))  # type: ignore[arg-type]
            manifest_blob = "blobs/sha256/" + index["manifests"][0]["digest"][7:]
            manifest = json.load(outer.extractfile(manifest_blob))  # type: ignore[arg-type]
            layer = outer.extractfile("blobs/sha256/" + manifest["layers"][0]["digest"][7:])
            with tarfile.open(fileobj=layer, mode="r|") as files:
                files.extractall(root)
        program = config["Entrypoint"][0]
        if name not in says:
            with open(root / program.lstrip("/"), "rb") as binary:
                assert sha256(binary) == digests.of(BINARIES / name)
        flag = "-v" if name == "pause" else "--version"
        ran = subprocess.run(
            ["chroot", str(root), program, flag], capture_output=True, text=True, env=CLEAN
        )
        assert says.get(name, f"Kubernetes {version}") in ran.stdout + ran.stderr, ran
    shutil.rmtree(tmp_path / "roots")

    # A second run makes nothing.
    lines.clear()
    started = time.monotonic()
    kubernetes.ensure_repository(
        BINARIES, tmp_path / "mirror", work / "gnupg", work, digests, lines.append
    )
    images.ensure_images(BINARIES, version, work / "images", digests, lines.append)
    again = time.monotonic() - started
    assert [line for line in lines if "coredns" not in line] == []
    print(f"\nbuilt from {BINARIES} in {first:.1f} s; again in {again:.1f} s")
    shutil.rmtree(work / "images")  # 400 MB: not kept with the test's folder

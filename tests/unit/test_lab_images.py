"""The lab's container images (kubi.lab.images), made from stand-in binaries
(tests/kubernetes_stand_ins.py) with the real tools: skopeo reads them, and kube-proxy's
iptables runs from its image alone.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from kubi.lab import images
from tests.kubernetes_stand_ins import ARCHIVES, CORE_DNS_LINE, VERSION, run, stand_ins

IN_CI = os.environ.get("CI") == "true"
MISSING = [tool for tool in ("skopeo", "dpkg-query", "ldd") if shutil.which(tool) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING) and not IN_CI,
    reason=f"needs {', '.join(MISSING)} (apt-get install skopeo; scripts/bootstrap does)",
)


class Build:
    """Images made from stand-in binaries in a folder, and what the build logged."""

    def __init__(self, base: Path):
        self.binaries = stand_ins(base / "bin")
        self.work = base / "work"
        self.lines: list[str] = []

    def images(self) -> dict[str, Path]:
        digests = images.FileDigests(self.work / "digests.json")
        return images.ensure_images(
            self.binaries, VERSION, self.work / "images", digests, self.lines.append
        )


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Build, dict[str, Path]]:
    build = Build(tmp_path_factory.mktemp("lab"))
    return build, build.images()


def layer_of(archive: Path) -> tuple[dict, dict, tarfile.TarFile]:
    """(index, config, layer tar) of a single-image archive."""
    outer = tarfile.open(archive)  # noqa: SIM115 - read until the test ends
    index = json.load(outer.extractfile("index.json"))  # type: ignore[arg-type]
    manifest_digest = index["manifests"][0]["digest"].removeprefix("sha256:")
    manifest = json.load(outer.extractfile(f"blobs/sha256/{manifest_digest}"))  # type: ignore[arg-type]
    config = json.load(outer.extractfile("blobs/sha256/" + manifest["config"]["digest"][7:]))  # type: ignore[arg-type]
    layer = outer.extractfile("blobs/sha256/" + manifest["layers"][0]["digest"][7:])
    return index, config, tarfile.open(fileobj=layer)  # type: ignore[arg-type]


def test_images_are_the_ones_kubeadm_lists_and_skopeo_reads_them(built):
    build, archives = built
    assert {ref: path.name for ref, path in archives.items()} == ARCHIVES
    assert build.lines.count(CORE_DNS_LINE) == 1
    entrypoints = {
        "kube-apiserver": "/usr/local/bin/kube-apiserver", "pause": "/pause",
        "kube-proxy": "/usr/local/bin/kube-proxy", "etcd": "/usr/local/bin/etcd",
    }  # fmt: skip
    for ref, archive in archives.items():
        inspected = json.loads(run("skopeo", "inspect", f"oci-archive:{archive}"))
        config = json.loads(run("skopeo", "inspect", "--config", f"oci-archive:{archive}"))
        assert (inspected["Architecture"], inspected["Os"], len(inspected["Layers"])) == (
            "amd64", "linux", 1,
        )  # fmt: skip
        index, _, layer = layer_of(archive)
        annotations = index["manifests"][0]["annotations"]
        assert annotations == {
            "io.containerd.image.name": ref,
            "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1],
        }
        name = ref.rsplit("/", 1)[1].split(":")[0]
        if name in entrypoints:
            assert config["config"]["Entrypoint"] == [entrypoints[name]]
        assert (
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            in (config["config"]["Env"])
        )
        assert {m.uid for m in layer.getmembers()} == {0}


def test_image_layers_hold_the_binaries(built):
    build, archives = built
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        _, _, layer = layer_of(archives[f"registry.k8s.io/{name}:v1.33.3"])
        member = layer.getmember(f"usr/local/bin/{name}")
        assert member.mode == 0o755
        assert layer.extractfile(member).read() == (build.binaries / name).read_bytes()  # type: ignore[union-attr]
    _, _, pause = layer_of(archives["registry.k8s.io/pause:3.10"])
    assert pause.getnames() == ["pause"]
    _, _, etcd = layer_of(archives["registry.k8s.io/etcd:3.5.21-0"])
    for name in ("etcd", "etcdctl"):
        content = etcd.extractfile(f"usr/local/bin/{name}").read()  # type: ignore[union-attr]
        assert content == (images.etcd_folder() / name).read_bytes()
    _, _, proxy = layer_of(archives["registry.k8s.io/kube-proxy:v1.33.3"])
    names = set(proxy.getnames())
    assert {
        "usr/local/bin/kube-proxy", "usr/sbin/xtables-nft-multi", "etc/protocols",
        "etc/ethertypes", "usr/lib/x86_64-linux-gnu/xtables/libxt_comment.so",
    } <= names  # fmt: skip
    for link in ("iptables", "ip6tables", "iptables-save", "iptables-restore"):
        assert proxy.getmember(f"usr/sbin/{link}").linkname == "xtables-nft-multi"
    assert proxy.getmember("lib").linkname == "usr/lib"  # merged /usr, as the loader asks


def test_images_are_written_again_only_when_an_input_changed(tmp_path):
    build = Build(tmp_path)
    first = build.images()
    times = {ref: path.stat().st_mtime_ns for ref, path in first.items()}
    build.lines.clear()
    build.images()
    assert [line for line in build.lines if "written" in line] == []
    assert {ref: path.stat().st_mtime_ns for ref, path in first.items()} == times
    with open(build.binaries / "kube-scheduler", "ab") as binary:
        binary.write(b"\0changed")
    build.images()
    written = [line for line in build.lines if "written" in line]
    assert len(written) == 1 and "kube-scheduler:v1.33.3" in written[0]


def test_kube_proxy_image_runs_iptables(built, tmp_path):
    """iptables of the image, in the image's root alone, adds and lists a rule with a module
    (in a network namespace of its own)."""
    _, archives = built
    _, _, layer = layer_of(archives["registry.k8s.io/kube-proxy:v1.33.3"])
    layer.extractall(tmp_path / "rootfs")
    root = tmp_path / "rootfs"
    assert "(nf_tables)" in run("chroot", root, "/usr/sbin/iptables", "--version")
    rules = run(
        "unshare", "--net", "sh", "-c",
        f"chroot {root} iptables -A INPUT -p tcp --dport 80 -m comment --comment kubi -j ACCEPT"
        f" && chroot {root} iptables-save",
    )  # fmt: skip
    assert "-A INPUT -p tcp -m tcp --dport 80 -m comment --comment kubi -j ACCEPT" in rules

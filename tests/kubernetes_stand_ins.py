"""Stand-ins for the Kubernetes binaries, as inputs of the lab's build in tests.

Copies of /bin/true under the names of the binaries, and a `kubeadm` script that answers
the two questions the build asks (`version -o short`, `config images list
--kubernetes-version v1.33.3`) in kubeadm 1.33.3's own words (its output, as the real
binary prints it). They stand in for inputs only: what the tests check is kubi's code and
the real tools it drives.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

NAMES = (
    "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubeadm",
    "kubelet", "kubectl", "pause",
)  # fmt: skip
VERSION = "v1.33.3"
# `kubeadm config images list --kubernetes-version v1.33.3`, as kubeadm 1.33.3 prints it.
KUBEADM_IMAGES = """\
registry.k8s.io/kube-apiserver:v1.33.3
registry.k8s.io/kube-controller-manager:v1.33.3
registry.k8s.io/kube-scheduler:v1.33.3
registry.k8s.io/kube-proxy:v1.33.3
registry.k8s.io/coredns/coredns:v1.12.0
registry.k8s.io/pause:3.10
registry.k8s.io/etcd:3.5.21-0
"""
FAKE_KUBEADM = f"""\
#!/bin/sh
# Stands in for kubeadm v1.33.3 as an input of the lab's build (not under test).
case "$*" in
  "version -o short") echo {VERSION} ;;
  "config images list --kubernetes-version {VERSION}") printf '%s' '{KUBEADM_IMAGES}' ;;
  *) echo "stand-in kubeadm: unexpected arguments: $*" >&2; exit 1 ;;
esac
"""
# The archives the lab makes for those images (all but CoreDNS).
ARCHIVES = {
    "registry.k8s.io/kube-apiserver:v1.33.3": "kube-apiserver_v1.33.3.tar",
    "registry.k8s.io/kube-controller-manager:v1.33.3": "kube-controller-manager_v1.33.3.tar",
    "registry.k8s.io/kube-scheduler:v1.33.3": "kube-scheduler_v1.33.3.tar",
    "registry.k8s.io/kube-proxy:v1.33.3": "kube-proxy_v1.33.3.tar",
    "registry.k8s.io/pause:3.10": "pause_3.10.tar",
    "registry.k8s.io/etcd:3.5.21-0": "etcd_3.5.21-0.tar",
}
CORE_DNS_LINE = (
    "lab: no image registry.k8s.io/coredns/coredns:v1.12.0: it cannot be built offline; "
    "the cluster runs without it"
)


def stand_ins(folder: Path) -> Path:
    """A folder of stand-in binaries."""
    folder.mkdir(parents=True)
    for name in NAMES:
        if name != "kubeadm":
            shutil.copyfile("/bin/true", folder / name)
            (folder / name).chmod(0o755)
    (folder / "kubeadm").write_text(FAKE_KUBEADM)
    (folder / "kubeadm").chmod(0o755)
    return folder


def run(*argv: str | Path) -> str:
    """A tool's output; the test fails with its messages when it fails."""
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout + proc.stderr

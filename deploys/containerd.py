"""containerd: the container runtime of the Kubernetes nodes, from Debian.

containerd, runc and the CNI plugins (Debian's packages), configured for the kubelet: the
same cgroup driver (`containerd.cgroup_driver`), the pause image kubeadm expects, and the
registry folder the registry component fills, so that nodes pull the platform's images
with its CA and pull account. `containerd config dump` checks a new configuration before
containerd restarts with it; a refused one is put back.

    pyinfra inventories/lab.py deploys/containerd.py
"""

from __future__ import annotations

import kubi.kubernetes
import kubi.registry
from kubi import ops
from kubi.deploy import component, entry_script, platform
from kubi.templates import render

CONFIG = "/etc/containerd/config.toml"
PACKAGES = ["containerd", "runc", "containernetworking-plugins"]


@component("containerd")
def containerd() -> None:
    cfg = platform()
    settings = cfg.containerd
    ops.packages(name="container runtime packages", names=PACKAGES)
    ops.file(
        name="containerd configuration",
        path=CONFIG,
        content=render(
            "containerd",
            "config.toml",
            sandbox_image=kubi.kubernetes.sandbox_image(cfg),
            cgroup_driver=settings.cgroup_driver,
            restrict_oom_score_adj=settings.restrict_oom_score_adj,
            certs_dir=kubi.registry.CONTAINERD_CERTS_DIR,
        ),
        check=f"containerd --config {CONFIG} config dump >/dev/null",
        # Running containers keep running: their shims outlive a containerd restart.
        reload="systemctl restart containerd",
        make_dirs=True,
    )
    ops.service(name="containerd running", unit="containerd")


if entry_script(__name__):
    containerd()

"""containerd: the container runtime of the Kubernetes nodes.

containerd and runc (Docker's containerd.io at `containerd.version`, or Debian's: see
kubi/containerd.py) and Debian's CNI plugins, configured for the kubelet: the
same cgroup driver (`containerd.cgroup_driver`), the pause image kubeadm expects, and the
registry folder the registry component fills, so that nodes pull the platform's images
with its CA and pull account. `containerd config dump` checks a new configuration before
containerd restarts with it; a refused one is put back.

    pyinfra inventories/lab.py deploys/containerd.py
"""

from __future__ import annotations

from pyinfra import host

import kubi.containerd
import kubi.kubernetes
import kubi.registry
from facts.apt import AptKeyrings
from kubi import ops
from kubi.deploy import component, entry_script, me, platform, vendor_packages
from kubi.templates import render

CONFIG = "/etc/containerd/config.toml"


@component("containerd")
def containerd() -> None:
    cfg, node = platform(), me()
    settings = cfg.containerd
    if settings.source == "docker":
        source = kubi.containerd.apt_source(cfg)
        vendor_packages(
            node, [source], host.get_fact(AptKeyrings, keyrings=(source.keyring,)),
            settings.apt_mirror, preferences=kubi.containerd.PREFERENCES_PATH,
            subject="containerd",
        )  # fmt: skip
        ops.packages(name="CNI plugins", names=list(kubi.containerd.CNI_PACKAGES))
    else:
        ops.packages(
            name="container runtime packages",
            names=[*kubi.containerd.DEBIAN_PACKAGES, *kubi.containerd.CNI_PACKAGES],
        )
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

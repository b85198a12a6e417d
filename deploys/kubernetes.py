"""kubernetes: the kubeadm cluster on the control planes and workers.

This stage installs kubeadm, kubelet and kubectl from the minor's channel on pkgs.k8s.io
(key fingerprint pinned, exact version pinned; directly, through the package proxy, or from
`kubernetes.apt_mirror`), puts the deployer's cluster PKI (kubi/cluster_pki.py) into
/etc/kubernetes/pki on the control planes, and writes each node's kubeadm configuration
(kubi/kubeadm.py), which `kubeadm config validate` checks before it is kept. The init and
joins that use them are the next stage of the component.

    pyinfra inventories/lab.py deploys/kubernetes.py
"""

from __future__ import annotations

from pyinfra import host

import kubi.kubernetes
from facts.kubernetes import KubernetesNodeState
from kubi import kubeadm, ops
from kubi.cluster_pki import cluster_pki
from kubi.deploy import addresses, component, entry_script, me, platform, vendor_packages
from kubi.secrets import for_platform


@component("kubernetes")
def kubernetes() -> None:
    cfg, node = platform(), me()
    source = kubi.kubernetes.apt_source(cfg)
    state = host.get_fact(KubernetesNodeState, keyring=source.keyring)
    vendor_packages(
        node, [source], state["keyrings"], cfg.kubernetes.apt_mirror,
        preferences=kubi.kubernetes.PREFERENCES_PATH, subject="Kubernetes",
    )  # fmt: skip
    pki = cluster_pki(for_platform(cfg))
    if "control_plane" in node.roles:
        for name, content in pki.pki_files().items():
            key = name.endswith(".key")
            ops.file(
                name=f"cluster PKI {name}",
                path=f"{kubeadm.PKI_DIR}/{name}",
                content=content,
                mode="600" if key else "644",
                make_dirs=True,
            )
    ops.file(
        name="kubeadm configuration",
        path=kubeadm.CONFIG,
        content=kubeadm.config(cfg, node, addresses(), pki),
        mode="600",  # the bootstrap token, and on control planes the certificate key
        check=f"kubeadm config validate --config {kubeadm.CONFIG} >/dev/null",
        make_dirs=True,
    )


if entry_script(__name__):
    kubernetes()

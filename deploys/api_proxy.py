"""api_proxy: every Kubernetes node reaches the API through its own 127.0.0.1.

The cluster's API endpoint (kubeadm's controlPlaneEndpoint) is `kube-api.<domain>:<port>`,
a name that /etc/hosts on every node points at 127.0.0.1, where haproxy forwards to every
control plane's API server that answers /readyz. So the endpoint survives the loss of any
control plane, with no virtual IP and no external load balancer (Kubespray's node-local
proxy design; measured on the lab in docs/kubernetes-lab.md §8). The name must not point
at a control plane's own address: the second and third control planes could not join
before their own API server exists.

    pyinfra inventories/lab.py deploys/api_proxy.py
"""

from __future__ import annotations

from kubi import ops
from kubi.deploy import addresses, component, entry_script, platform
from kubi.templates import render

CONFIG = "/etc/haproxy/haproxy.cfg"


@component("api_proxy")
def api_proxy() -> None:
    cfg = platform()
    ip_of = addresses()
    ops.block(
        name="API name on this node's 127.0.0.1",
        path="/etc/hosts",
        content=f"127.0.0.1\t{cfg.api_name}",
        marker="kubi api_proxy",
        required=("127.0.0.1 localhost",),
    )
    ops.packages(name="haproxy package", names=["haproxy"])
    servers = [{"name": h.short_name, "ip": ip_of[h.name]} for h in cfg.role("control_plane")]
    ops.file(
        name="haproxy configuration",
        path=CONFIG,
        content=render(
            "api_proxy",
            "haproxy.cfg",
            api_name=cfg.api_name,
            port=cfg.api_proxy.port,
            servers=servers,
        ),  # fmt: skip
        check=f"haproxy -c -q -f {CONFIG}",
        # A reload keeps established connections (watches) on the old process until done.
        reload="systemctl reload haproxy",
    )
    ops.service(name="haproxy running", unit="haproxy")


if entry_script(__name__):
    api_proxy()

"""Settings of the ingress component (deploys/ingress.py): the two ingress controllers, the
nodes that carry each, their NodePorts, and where the pinned chart comes from."""

from __future__ import annotations

from pydantic import Field

from kubi.config.types import HostName, NodePort
from kubi.config.upstream import UpstreamChartSource


class IngressSettings(UpstreamChartSource):
    """The admin ingress (the platform's UIs, reached only from the cockpit) and the public
    ingress (applications, behind your load balancer)."""

    admin_http_nodeport: NodePort = 30080
    public_http_nodeport: NodePort = 30090
    public_https_nodeport: NodePort = 30443
    admin_nodes: list[HostName] | None = Field(
        None,
        description="the Kubernetes nodes that run the admin ingress and answer on its "
        "NodePort (the cockpit's upstreams); default: every worker",
    )
    public_nodes: list[HostName] | None = Field(
        None,
        description="the Kubernetes nodes that run the public ingress and answer on its "
        "NodePorts (your load balancer's targets); default: every worker",
    )

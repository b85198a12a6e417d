"""Settings of the two ingress controllers; the cockpit already routes to the admin one."""

from __future__ import annotations

from kubi.config.types import NodePort, Section


class IngressSettings(Section):
    """NodePorts of the two ingress controllers (admin: monitoring and dashboards)."""

    admin_http_nodeport: NodePort = 30080
    public_http_nodeport: NodePort = 30090
    public_https_nodeport: NodePort = 30443

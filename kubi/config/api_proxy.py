"""Settings of the node-local proxy to the Kubernetes API (deploys/api_proxy.py)."""

from __future__ import annotations

from pydantic import Field

from kubi.config.types import Port, Section


class ApiProxySettings(Section):
    """haproxy on every Kubernetes node, in front of every control plane's API server."""

    port: Port = Field(6444, description="where nodes reach the API, on their own 127.0.0.1")

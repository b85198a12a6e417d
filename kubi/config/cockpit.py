"""Settings of the cockpit, the input host's nginx in front of every UI (deploys/cockpit.py)."""

from __future__ import annotations

from pydantic import Field

from kubi.config.types import Port, Section


class CockpitSettings(Section):
    """The input host's nginx, bound to 127.0.0.1: one SSH port forward reaches every UI."""

    port: Port = 8080
    api_port: Port = Field(6443, description="TCP stream to the control planes' Kubernetes API")

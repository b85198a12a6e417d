"""Settings of the Docker registry on the repository host (deploys/registry.py)."""

from __future__ import annotations

from pydantic import Field, StrictBool, model_validator

from kubi.config.types import AbsolutePath, KeyFile, Port, Section


class RegistrySettings(Section):
    """Docker registry on the repository host, behind nginx with TLS and basic auth."""

    port: Port = 443
    storage_path: AbsolutePath = "/var/lib/docker-registry"
    tls_cert: KeyFile | None = Field(None, description="your certificate; default: the platform CA")
    tls_key: KeyFile | None = None
    anonymous_pull: StrictBool = False

    @model_validator(mode="after")
    def _cert_and_key(self) -> RegistrySettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give both tls_cert and tls_key, or neither (then the CA signs one)")
        return self

"""Pinned versions, in one place; Kubernetes and the log stack are checked against their
matrices."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator, model_validator

from kubi.config import matrices
from kubi.config.types import Section, Series, Version

# MongoDB publishes packages for Debian bookworm from this series on.
MONGODB_BOOKWORM = "7.0"


class Versions(Section):
    """Pinned versions: Kubernetes checked against kubi/config/kubernetes.toml, the log stack
    against kubi/config/log_stack.toml."""

    debian: Literal["bookworm"] = "bookworm"
    kubernetes: Version = "1.31.4"
    graylog: Series = "6.1"
    opensearch: Version = "2.15.0"
    mongodb: Series = "7.0"

    @field_validator("kubernetes")
    @classmethod
    def _kubernetes_supported(cls, version: str) -> str:
        minors = matrices.kubernetes().minor
        minor = ".".join(version.split(".")[:2])
        if minor not in minors:
            supported = ", ".join(sorted(minors, key=matrices.series_key))
            raise ValueError(
                f"minor {minor} is not supported by kubi (kubi/config/kubernetes.toml); "
                f"supported: {supported}"
            )
        return version

    @model_validator(mode="after")
    def _log_stack_compatible(self) -> Versions:
        if matrices.series_key(self.mongodb) < matrices.series_key(MONGODB_BOOKWORM):
            raise ValueError(
                f"mongodb {self.mongodb}: MongoDB publishes packages for Debian bookworm "
                f"from {MONGODB_BOOKWORM} on"
            )
        rows = matrices.log_stack().graylog
        row = rows.get(self.graylog)
        if row is None:
            raise ValueError(
                f"graylog {self.graylog} is not in kubi's version matrix "
                f"(kubi/config/log_stack.toml); supported: {', '.join(rows)}"
            )
        for name in ("opensearch", "mongodb"):
            supported = getattr(row, name)
            if getattr(self, name) not in supported:
                raise ValueError(
                    f"{name} {getattr(self, name)} is not supported by graylog {self.graylog} "
                    f"(supported: {supported.low} to {supported.high})"
                )
        return self

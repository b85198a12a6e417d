"""Pinned versions, in one place; the log stack's are checked against its matrix."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from kubi.config import matrices
from kubi.config.types import Section, Series, Version

# MongoDB publishes packages for Debian bookworm from this series on.
MONGODB_BOOKWORM = "7.0"


class Versions(Section):
    """Pinned versions (the log stack is checked against kubi/config/log_stack.toml)."""

    debian: Literal["bookworm"] = "bookworm"
    kubernetes: Version = "1.31.4"
    graylog: Series = "6.1"
    opensearch: Version = "2.15.0"
    mongodb: Series = "7.0"

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

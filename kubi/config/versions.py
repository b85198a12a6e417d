"""Pinned versions, in one place; Kubernetes and the log stack are checked against their
matrices."""

from __future__ import annotations

import datetime as dt
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
    # The newest minor of kubi/config/kubernetes.toml, at its reference patch (the images kubi
    # mirrors are that release's). It needs containerd 2.2+: containerd.source docker.
    kubernetes: Version = "1.36.3"
    graylog: Series = "6.1"
    opensearch: Version = "2.15.0"
    mongodb: Series = "7.0"

    @field_validator("kubernetes")
    @classmethod
    def _kubernetes_supported(cls, version: str) -> str:
        matrices.kubernetes_minor(version)  # UnsupportedKubernetes names the supported minors
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


def current_date() -> dt.date:
    """The deployer's date, for end-of-life notices (a function so tests can set it)."""
    return dt.date.today()


def kubernetes_end_of_life(version: str, today: dt.date | None = None) -> str | None:
    """One line when the minor of `version` has reached its upstream end of life, else None.

    Only a notice: a platform on an old minor must stay manageable (and upgradable) with kubi,
    so the minor stays in the table and loading it is never refused for its age.
    """
    table = matrices.kubernetes()
    entry = matrices.kubernetes_minor(version)
    today = today or current_date()
    if today < entry.end_of_life:
        return None
    maintained = [m for m in table.supported if today < table.minor[m].end_of_life]
    advice = (
        f"move to {maintained[-1]}"
        if maintained
        else "no minor in kubi/config/kubernetes.toml is maintained upstream any more"
    )
    minor = ".".join(version.split(".")[:2])
    return (
        f"versions.kubernetes {version}: Kubernetes {minor} reached its upstream end of life on "
        f"{entry.end_of_life.isoformat()} and gets no more security fixes; {advice}"
    )

"""Settings of the cilium component (deploys/cilium.py): where its pinned chart comes from."""

from __future__ import annotations

from pydantic import Field

from kubi.config.types import HttpUrl, LocalPath, Section


class CiliumSettings(Section):
    """Where the deployer takes Cilium's chart archive (its digest is checked either way)."""

    charts: LocalPath | None = Field(
        None,
        description="a folder on the deployer holding cilium-<version>.tgz of the pinned "
        "version (an air-gapped site's copy); default: downloaded from `repository`",
    )
    repository: HttpUrl | None = Field(
        None,
        description="the chart repository to download from instead of upstream's "
        "(kubi/config/upstream_charts.toml), e.g. the platform's own chart repository",
    )

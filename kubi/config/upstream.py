"""Where an add-on rendered from an upstream chart takes the chart's archive: the two
settings every such add-on's section has (kubi/upstream_charts.py uses them)."""

from __future__ import annotations

from pydantic import Field

from kubi.config.types import HttpUrl, LocalPath, Section


class UpstreamChartSource(Section):
    """Where the deployer takes the add-on's pinned chart archive (its digest is checked
    either way)."""

    charts: LocalPath | None = Field(
        None,
        description="a folder on the deployer holding <chart>-<version>.tgz of the pinned "
        "version (an air-gapped site's copy); default: downloaded from `repository`",
    )
    repository: HttpUrl | None = Field(
        None,
        description="the chart repository to download from instead of upstream's "
        "(kubi/config/upstream_charts.toml), e.g. the platform's own chart repository",
    )

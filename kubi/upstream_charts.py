"""The archives of the upstream charts kubi renders (kubi/config/upstream_charts.toml), on
the deployer: where each one comes from, and the check of its digest before Helm reads it.

An add-on rendered from an upstream chart has two settings (`UpstreamChartSource`):
`charts`, a folder holding the archive (an air-gapped site's copy), else `repository` (the
upstream one by default, or the platform's own chart repository) from which the archive is
downloaded once into the deployer's cache. The pinned sha256 is checked either way.

`kubi charts mirror` publishes the archives of the charts the platform uses, unchanged,
into the platform's chart repository (kubi/charts.py), so the next deployer, or the
cluster's own users, take them from there.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubi import helm
from kubi.charts import ChartError
from kubi.config import Platform, matrices
from kubi.config.upstream import UpstreamChartSource


class UpstreamChartError(ChartError):
    """The archive cannot be used; the message names the file and what to do."""


def archive_name(chart: str) -> str:
    return f"{chart}-{matrices.upstream_chart(chart).version}.tgz"


def checked_archive(chart: str, folder: Path) -> Path:
    """`folder`/<chart>-<version>.tgz, once its sha256 is the pinned digest."""
    pinned = matrices.upstream_chart(chart)
    path = folder / archive_name(chart)
    if not path.is_file():
        raise UpstreamChartError(
            f"no {path}: put the chart archive there ({pinned.repository}{archive_name(chart)})"
        )
    found = hashlib.sha256(path.read_bytes()).hexdigest()
    if found != pinned.digest:
        raise UpstreamChartError(
            f"{path}: sha256 {found}, not the pinned {pinned.digest} of {chart} "
            f"{pinned.version} (kubi/config/upstream_charts.toml); fetch it again"
        )
    return path


def check_folder(chart: str, source: UpstreamChartSource, field: str) -> list[str]:
    """A config problem when `<field>.charts` is given without the pinned archive in it."""
    if source.charts is None:
        return []
    try:
        checked_archive(chart, source.charts)
    except UpstreamChartError as problem:
        return [f"{field}.charts: {problem}"]
    return []


def cache() -> Path:
    """The deployer's cache of downloaded archives."""
    home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return home / "kubi" / "charts"


def folder(chart: str, source: UpstreamChartSource) -> Path:
    """The folder holding the pinned archive of `chart`: `source.charts`, else the deployer's
    cache, where a missing archive is downloaded (and its digest checked) first."""
    if source.charts is not None:
        return source.charts
    pinned = matrices.upstream_chart(chart)
    where = cache()
    if not (where / archive_name(chart)).is_file():
        where.mkdir(parents=True, exist_ok=True)
        repository = str(source.repository or pinned.repository)
        helm.fetch(helm.RepoChart(repository, chart, pinned.version, pinned.digest), where)
    return where


def archive(chart: str, source: UpstreamChartSource) -> Path:
    """The checked archive of `chart`, from where `source` says."""
    try:
        return checked_archive(chart, folder(chart, source))
    except helm.HelmError as problem:  # a download: unreachable, or not the pinned digest
        raise UpstreamChartError(str(problem)) from None


def untested(chart: str, platform: Platform) -> str | None:
    """A warning when upstream does not test the pinned release on the platform's
    Kubernetes minor, else None."""
    pinned = matrices.upstream_chart(chart)
    minor = ".".join(platform.versions.kubernetes.split(".")[:2])
    if minor in pinned.kubernetes:
        return None
    tested = pinned.kubernetes
    return (
        f"{chart} {pinned.version} is tested upstream on Kubernetes {tested.low} to "
        f"{tested.high}, not {minor} (kubi/config/upstream_charts.toml)"
    )


def rendered(
    component: str,
    chart: str,
    platform: Platform,
    render: Callable[[Platform, Path], list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    """`render(platform, folder)` with the folder holding the component's checked archive,
    for its deploy: a warning when upstream does not test the release on the platform's
    Kubernetes, and a one-line error (exit 1) when the archive cannot be had."""
    from pyinfra import logger

    field = used(platform)[chart]
    untested_here = untested(chart, platform)
    if untested_here:
        logger.warning(f"{component}: {untested_here}")
    try:
        return render(platform, archive(chart, source(platform, field)).parent)
    except (helm.HelmError, UpstreamChartError) as problem:
        logger.error(f"{component}: {problem}")
        raise SystemExit(1) from None


def used(platform: Platform) -> dict[str, str]:
    """The upstream charts the platform's components that are on render: chart name -> the
    settings field that says where its archive comes from (an `UpstreamChartSource`)."""
    import kubi.cilium
    import kubi.ingress

    found = {}
    if kubi.cilium.in_use(platform):
        found[kubi.cilium.CHART] = "cilium"
    if kubi.ingress.in_use(platform):
        found[kubi.ingress.CHART] = "ingress"
    return found


def source(platform: Platform, field: str) -> UpstreamChartSource:
    found = getattr(platform, field)
    assert isinstance(found, UpstreamChartSource)
    return found


def check_folders(platform: Platform) -> list[str]:
    """A config problem for each `<field>.charts` given without the pinned archive in it:
    said before anything changes, like every other input of the config."""
    return [
        problem
        for chart, field in used(platform).items()
        for problem in check_folder(chart, source(platform, field), field)
    ]

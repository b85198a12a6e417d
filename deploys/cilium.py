"""cilium: the pod network, Cilium, applied into the cluster through kubi's tunnel.

Its objects are rendered from the pinned upstream chart (kubi/cilium.py) and applied by
kubi's apply layer, planned by a server-side dry run (ops.cluster_objects), by the input
host's run, once for the platform. The chart archive comes from `cilium.charts`
(a folder on the deployer), else it is downloaded from `cilium.repository` (default:
upstream) into the deployer's cache; its digest is checked either way.

    pyinfra inventories/prod.py deploys/cilium.py
"""

from __future__ import annotations

import os
from pathlib import Path

from pyinfra import logger

import kubi.cilium
from kubi import helm, ops
from kubi.config import Platform, matrices
from kubi.deploy import component, entry_script, platform


@component("cilium")
def cilium() -> None:
    cfg = platform()  # on the input host (one per platform): the cluster's objects, once
    if not kubi.cilium.in_use(cfg):
        logger.warning(
            f"cilium: kubernetes.pod_network is {cfg.kubernetes.pod_network}: Cilium is left out"
        )
        return
    pinned = matrices.upstream_chart(kubi.cilium.CHART)
    minor = ".".join(cfg.versions.kubernetes.split(".")[:2])
    if minor not in pinned.kubernetes:
        tested = pinned.kubernetes
        logger.warning(
            f"cilium: Cilium {pinned.version} is tested upstream on Kubernetes {tested.low} "
            f"to {tested.high}, not {minor} (kubi/config/upstream_charts.toml)"
        )
    try:
        objects = kubi.cilium.render(cfg, charts_folder(cfg))
    except (helm.HelmError, kubi.cilium.CiliumError) as problem:  # a download, a digest
        logger.error(f"cilium: {problem}")
        raise SystemExit(1) from None
    kinds = sorted({(obj["apiVersion"], obj["kind"]) for obj in objects})
    ops.cluster_objects(
        name=f"Cilium {pinned.version}",
        component="cilium",
        objects=objects,
        kinds=kinds,
    )


def charts_folder(cfg: Platform) -> Path:
    """The folder holding the pinned archive: `cilium.charts`, else the deployer's cache,
    where a missing archive is downloaded (and checked) first."""
    if cfg.cilium.charts is not None:
        return cfg.cilium.charts
    pinned = matrices.upstream_chart(kubi.cilium.CHART)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kubi" / "charts"
    if not (cache / kubi.cilium.archive_name()).is_file():
        cache.mkdir(parents=True, exist_ok=True)
        source = helm.RepoChart(
            str(cfg.cilium.repository or pinned.repository), kubi.cilium.CHART,
            pinned.version, pinned.digest,
        )  # fmt: skip
        helm.fetch(source, cache)
    return cache


if entry_script(__name__):
    cilium()

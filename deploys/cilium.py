"""cilium: the pod network, Cilium, applied into the cluster through kubi's tunnel.

Its objects are rendered from the pinned upstream chart (kubi/cilium.py) and applied by
kubi's apply layer, planned by a server-side dry run (ops.cluster_objects), by the input
host's run, once for the platform. The chart archive comes from `cilium.charts`
(a folder on the deployer), else it is downloaded from `cilium.repository` (default:
upstream) into the deployer's cache; its digest is checked either way.

    pyinfra inventories/prod.py deploys/cilium.py
"""

from __future__ import annotations

from pyinfra import logger

import kubi.cilium
from kubi import apply, ops, upstream_charts
from kubi.config import matrices
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
    objects = upstream_charts.rendered("cilium", kubi.cilium.CHART, cfg, kubi.cilium.render)
    ops.cluster_objects(
        name=f"Cilium {pinned.version}",
        component="cilium",
        objects=objects,
        kinds=apply.kinds(objects),
    )


if entry_script(__name__):
    cilium()

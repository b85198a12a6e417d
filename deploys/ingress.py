"""ingress: the admin and public ingress controllers (kubi/ingress.py), applied into the
cluster through kubi's tunnel by the input host's run, once for the platform.

Their objects are rendered from the pinned upstream chart of F5 NGINX Ingress Controller;
the archive comes from `ingress.charts` (a folder on the deployer), else it is downloaded
from `ingress.repository` (default: upstream) into the deployer's cache; its digest is
checked either way.

    pyinfra inventories/prod.py deploys/ingress.py
"""

from __future__ import annotations

import kubi.ingress
from kubi import apply, ops, upstream_charts
from kubi.config import matrices
from kubi.deploy import component, entry_script, platform


@component("ingress")
def ingress() -> None:
    cfg = platform()  # on the input host (one per platform): the cluster's objects, once
    pinned = matrices.upstream_chart(kubi.ingress.CHART)
    objects = upstream_charts.rendered("ingress", kubi.ingress.CHART, cfg, kubi.ingress.render)
    ops.cluster_objects(
        name=f"admin and public ingress (NGINX Ingress Controller chart {pinned.version})",
        component="ingress",
        objects=objects,
        kinds=apply.kinds(objects),
    )


if entry_script(__name__):
    ingress()

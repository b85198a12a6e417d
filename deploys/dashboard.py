"""dashboard: Headlamp, the Kubernetes dashboard (kubi/dashboard.py), behind the admin
ingress, applied into the cluster through kubi's tunnel by the input host's run, once for
the platform. Reached through the cockpit: http://dashboard.localhost:<cockpit port>/.

    pyinfra inventories/prod.py deploys/dashboard.py
"""

from __future__ import annotations

import kubi.dashboard
from kubi import ops
from kubi.deploy import component, entry_script, platform
from kubi.images import Image


@component("dashboard")
def dashboard() -> None:
    cfg = platform()  # on the input host (one per platform): the cluster's objects, once
    ops.cluster_objects(
        name=f"Kubernetes dashboard (Headlamp {Image(kubi.dashboard.image()).tag})",
        component="dashboard",
        objects=kubi.dashboard.objects(cfg),
        kinds=kubi.dashboard.KINDS,
    )


if entry_script(__name__):
    dashboard()

"""cockpit: the input host's nginx, bound to 127.0.0.1, in front of every UI.

An HTTP reverse proxy for every web UI that the components which are on declare in
`kubi.components` (in-cluster UIs through the admin ingress NodePort of the workers,
Graylog on the output host), plus a TCP stream to the Kubernetes API of every
control-plane node. One SSH port forward to the input host reaches every UI.

    pyinfra inventories/lab.py deploys/cockpit.py
"""

from kubi import nginx, ops
from kubi.deploy import addresses, component, entry_script, platform
from kubi.templates import render

WWW_DIR = "/var/www/kubi-cockpit"


@component("cockpit")
def cockpit() -> None:
    cfg = platform()
    ip_of = addresses()
    # Every UI the components that are on declare (kubi.components), by where it runs.
    backends = {
        "admin_ingress": {
            "title": "admin ingress",
            "servers": [
                f"{ip_of[h.name]}:{cfg.ingress.admin_http_nodeport}"
                for h in cfg.admin_ingress_nodes
            ],
        },
        "output": {
            "title": "output host",
            "servers": [f"{ip_of[h.name]}:80" for h in cfg.role("output")],
        },
    }
    uis = [
        {
            "name": route.name,
            "title": route.title,
            "via": backends[route.backend]["title"],
            "upstream": f"cockpit_{route.backend}",
            "upstream_host": cfg.ui_hostname(route.name),
            "headers": route.headers,
        }
        for route in cfg.ui_routes
    ]
    used = {route.backend for route in cfg.ui_routes}
    upstreams = {f"cockpit_{name}": b["servers"] for name, b in backends.items() if name in used}
    ops.file(
        name="cockpit landing page",
        path=f"{WWW_DIR}/index.html",
        content=render(
            "cockpit", "index.html", platform=cfg.name, uis=uis,
            port=cfg.cockpit.port, api_port=cfg.cockpit.api_port,
        ),
        make_dirs=True,
    )  # fmt: skip
    nginx.site(
        "cockpit",
        render(
            "cockpit",
            "cockpit.conf",
            port=cfg.cockpit.port,
            www_dir=WWW_DIR,
            uis=uis,
            upstreams=upstreams,
        ),
    )
    nginx.stream(
        "kube-api",
        render(
            "cockpit",
            "kube-api.conf",
            api_port=cfg.cockpit.api_port,
            control_plane=[ip_of[h.name] for h in cfg.role("control_plane")],
        ),
    )


if entry_script(__name__):
    cockpit()

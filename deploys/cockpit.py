"""cockpit: the input host's nginx, bound to 127.0.0.1, in front of every UI.

HTTP reverse proxies to Grafana, the Ceph dashboard and the Kubernetes dashboard (through
the admin ingress NodePort of the workers) and to Graylog (output host), plus a TCP
stream to the Kubernetes API of every control-plane node. One SSH port forward to the
input host reaches every UI; the routes to in-cluster UIs answer once the add-ons run.

    pyinfra inventories/lab.py deploys/cockpit.py
"""

from kubi import nginx, ops
from kubi.deploy import addresses, me, platform
from kubi.templates import render

WWW_DIR = "/var/www/kubi-cockpit"
# (name, title, where it runs): in-cluster UIs sit behind the admin ingress.
UIS = [
    ("grafana", "Grafana", "admin ingress"),
    ("ceph", "Ceph dashboard", "admin ingress"),
    ("dashboard", "Kubernetes dashboard", "admin ingress"),
    ("graylog", "Graylog", "output host"),
]

cfg = platform()
if "input" in me().roles:
    ip_of = addresses()
    uis = [
        {
            "name": name,
            "title": title,
            "via": via,
            "upstream": "cockpit_graylog" if name == "graylog" else "cockpit_admin_ingress",
            "upstream_host": cfg.ui_hostname(name),
        }
        for name, title, via in UIS
    ]
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
            admin_ingress=[ip_of[h.name] for h in cfg.admin_ingress_nodes],
            admin_nodeport=cfg.ingress.admin_http_nodeport,
            graylog=[ip_of[h.name] for h in cfg.role("output")],
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

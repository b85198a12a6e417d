"""nginx: the raw nginx of the service hosts (input, output, repository).

Installed empty: no default site, HTTP sites in /etc/nginx/sites.conf.d/ and TCP streams
in /etc/nginx/streams.conf.d/ (inside a stream {} block), both filled by the components
that need them through `kubi.nginx.site()` / `kubi.nginx.stream()`.

    pyinfra inventories/lab.py deploys/nginx.py
"""

from pyinfra.operations import files

import kubi.nginx
from kubi import ops
from kubi.deploy import component, entry_script, platform
from kubi.templates import render


@component("nginx")
def nginx() -> None:
    cfg = platform()
    ops.packages(name="nginx packages", names=["nginx", "libnginx-mod-stream"])
    for folder in (kubi.nginx.SITES_DIR, kubi.nginx.STREAMS_DIR):
        files.directory(name=f"folder {folder}", path=folder, mode="755")
    # The package creates the default site on first install, within this very run: the
    # operation sees it when pyinfra executes it (facts are read again then).
    ops.file(name="no default site", path="/etc/nginx/sites-enabled/default", content=None)
    ops.file(
        name="nginx.conf",
        path=f"{kubi.nginx.NGINX_DIR}/nginx.conf",
        content=render(
            "nginx",
            "nginx.conf",
            nginx_dir=kubi.nginx.NGINX_DIR,
            modules_dir=f"{kubi.nginx.NGINX_DIR}/modules-enabled",
            log_dir="/var/log/nginx",
            pid_file="/run/nginx.pid",
            worker_connections=cfg.nginx.worker_connections,
            server_tokens=cfg.nginx.server_tokens,
        ),
        check=kubi.nginx.CHECK,
        reload=kubi.nginx.RELOAD,
    )
    ops.service(name="nginx running", unit="nginx")


if entry_script(__name__):
    nginx()

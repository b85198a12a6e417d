"""nginx: the raw nginx of the service hosts (input, output, repository).

Installed empty: no default site, HTTP sites in /etc/nginx/sites.conf.d/ and TCP streams
in /etc/nginx/streams.conf.d/ (inside a stream {} block), both filled by the components
that need them through `kubi.nginx.site()` / `kubi.nginx.stream()`.

    pyinfra inventories/lab.py deploys/nginx.py
"""

from pyinfra.operations import files

from kubi import nginx, ops
from kubi.deploy import me, platform
from kubi.templates import render

NGINX_ROLES = ("input", "output", "repository")

cfg = platform()
if set(me().roles) & set(NGINX_ROLES):
    ops.packages(name="nginx packages", names=["nginx", "libnginx-mod-stream"])
    for folder in (nginx.SITES_DIR, nginx.STREAMS_DIR):
        files.directory(name=f"folder {folder}", path=folder, mode="755")
    # The package creates the default site on first install, within this very run: the
    # operation sees it when pyinfra executes it (facts are read again then).
    ops.file(name="no default site", path="/etc/nginx/sites-enabled/default", content=None)
    ops.file(
        name="nginx.conf",
        path=f"{nginx.NGINX_DIR}/nginx.conf",
        content=render(
            "nginx",
            "nginx.conf",
            nginx_dir=nginx.NGINX_DIR,
            modules_dir=f"{nginx.NGINX_DIR}/modules-enabled",
            log_dir="/var/log/nginx",
            pid_file="/run/nginx.pid",
            worker_connections=cfg.nginx.worker_connections,
            server_tokens=cfg.nginx.server_tokens,
        ),
        check=nginx.CHECK,
        reload=nginx.RELOAD,
    )
    ops.service(name="nginx running", unit="nginx")

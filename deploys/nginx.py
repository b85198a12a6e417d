"""nginx: the raw nginx of the service hosts (input, output, repository).

Installed empty: no default site, HTTP sites in /etc/nginx/sites.conf.d/ and TCP streams
in /etc/nginx/streams.conf.d/ (inside a stream {} block), both filled by the components
that need them through `kubi.nginx.site()` / `kubi.nginx.stream()`.

Every run checks that nginx accepts its whole configuration (`nginx -t`), in the fact it
reads for the unit anyway: a file nginx refuses, even one kubi does not own, makes the run
fail on that host with one line naming it, instead of reporting no change while every
later reload would fail.

    pyinfra inventories/lab.py deploys/nginx.py
"""

from pyinfra import host
from pyinfra.operations import files, server

import kubi.nginx
from facts.nginx import NginxState
from kubi import ops
from kubi.deploy import component, entry_script, platform
from kubi.templates import render


@component("nginx")
def nginx() -> None:
    cfg = platform()
    state = host.get_fact(NginxState)
    packages = ops.packages(name="nginx packages", names=["nginx", "libnginx-mod-stream"])
    for folder in (kubi.nginx.SITES_DIR, kubi.nginx.STREAMS_DIR):
        files.directory(name=f"folder {folder}", path=folder, mode="755")
    # The package creates the default site on first install, within this very run: the
    # operation sees it when pyinfra executes it (facts are read again then).
    ops.file(name="no default site", path="/etc/nginx/sites-enabled/default", content=None)
    written = ops.file(
        name="nginx.conf",
        path=kubi.nginx.CONF,
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
    # nginx refuses its configuration as it is, and this run changes nothing that could
    # mend it (a new nginx.conf is checked whole when written, and fails with nginx's own
    # message): fail, naming the file, rather than report no change while every reload fails.
    if state["refused"] and not (packages.will_change or written.will_change):
        server.shell(
            name="nginx accepts its configuration", commands=[kubi.nginx.refused(state["refused"])]
        )
        return
    # The state read with the check above, once nginx is installed; on a fresh host the
    # operation reads it itself when it executes, after the package has started nginx.
    ops.service(name="nginx running", unit="nginx", current=state if state["installed"] else None)


if entry_script(__name__):
    nginx()

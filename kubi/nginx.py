"""The raw nginx mechanism: components add an HTTP site or a TCP stream through here.

Every change goes through `kubi.ops.file` with `nginx -t` as the check: the file is
uploaded, the *whole* configuration is validated, and only then nginx reloads. An invalid
file is taken out again (or the previous version put back) and the run fails with nginx's
own message, so a running nginx is never broken.
"""

from __future__ import annotations

import re

from kubi import ops

NGINX_DIR = "/etc/nginx"
SITES_DIR = f"{NGINX_DIR}/sites.conf.d"  # HTTP server blocks, included inside http {}
STREAMS_DIR = f"{NGINX_DIR}/streams.conf.d"  # TCP/UDP servers, included inside stream {}
CHECK = "nginx -t"
RELOAD = "systemctl reload-or-restart nginx"

_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")


def _path(folder: str, name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"nginx config name {name!r}: use lower-case letters, digits and '-'")
    return f"{folder}/{name}.conf"


def site(name: str, content: str | None, **kwargs):
    """Add, update (or with ``content=None`` remove) the HTTP site ``name``."""
    return ops.file(
        name=f"nginx site {name}",
        path=_path(SITES_DIR, name),
        content=content,
        check=CHECK,
        reload=RELOAD,
        **kwargs,
    )


def stream(name: str, content: str | None, **kwargs):
    """Add, update (or with ``content=None`` remove) the TCP stream ``name``."""
    return ops.file(
        name=f"nginx stream {name}",
        path=_path(STREAMS_DIR, name),
        content=content,
        check=CHECK,
        reload=RELOAD,
        **kwargs,
    )

"""The raw nginx mechanism: components add an HTTP site or a TCP stream through here.

Every change goes through `kubi.ops.file` with `nginx -t` as the check: the file is
uploaded, the *whole* configuration is validated, and only then nginx reloads. An invalid
file is taken out again (or the previous version put back) and the run fails with nginx's
own message, so a running nginx is never broken.
"""

from __future__ import annotations

import re
import shlex

from kubi import ops

NGINX_DIR = "/etc/nginx"
CONF = f"{NGINX_DIR}/nginx.conf"  # the main file, kubi's own (deploys/nginx.py)
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


def refused(refusal: dict) -> str:
    """Shell that fails with one line saying which file nginx refuses and what to do.

    `refusal` is `facts.nginx.NginxState`'s ``refused``. Until the file is fixed, every
    reload fails, so the deploy stops here rather than report no change.
    """
    line = "" if refusal["line"] is None else f":{refusal['line']}"
    what = f"{refusal['file']}{line}" if refusal["file"] else "its configuration"
    # nginx.conf is kubi's: as kubi writes it, what is wrong lies elsewhere (a user, a module).
    todo = (
        "fix or remove that file" if refusal["file"] not in (None, CONF) else "fix what nginx names"
    )
    message = (
        f"kubi: nginx refuses {what} ({refusal['error']}), so every reload would fail: "
        f"{todo}, then run again"
    )
    return f"echo {shlex.quote(message)} >&2; exit 1"

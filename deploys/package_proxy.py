"""package_proxy: apt-cacher-ng on the repository host, so hosts install through it.

With `package_proxy.for_all_hosts`, the seed points every other host's apt at it (by the
repository alias), the source's "offline install" goal: only the repository host needs
to reach a Debian mirror (itself directly, or through `upstream_proxy` / `apt_proxy`).
Runs first in deploys/all.py, before the seed of the other hosts uses it.

    pyinfra inventories/lab.py deploys/package_proxy.py
"""

from __future__ import annotations

import shlex
from ipaddress import ip_address
from urllib.parse import urlsplit

from pyinfra import host
from pyinfra.operations import server

import kubi.firewall
from facts.firewall import FirewallState
from kubi import ops
from kubi.config import Platform
from kubi.deploy import addresses, component, entry_script, me, platform
from kubi.templates import render

# apt-cacher-ng 3.7 asks DNS about an upstream given as an address (an SRV query, then A and
# AAAA for "10.0.0.1" as a name). Where DNS does not answer (an offline platform), each of
# the first requests after a restart waits 17 s and fails with "500 Remote or cache error".
# So an address is given to it under a name that /etc/hosts answers at once.
UPSTREAM_NAMES = {"proxy": "kubi-package-upstream", "mirror": "kubi-package-mirror"}


def named(url: str | None, name: str) -> tuple[str | None, str | None]:
    """`url` with an address host replaced by `name`, and the /etc/hosts line for it
    (None when the host is already a name)."""
    if url is None:
        return None, None
    parts = urlsplit(url)
    try:
        address = ip_address(parts.hostname or "")
    except ValueError:
        return url, None
    netloc = name if parts.port is None else f"{name}:{parts.port}"
    return parts._replace(netloc=netloc).geturl(), f"{address}\t{name}"


def user_ports(cfg: Platform) -> list[int]:
    """Ports the cache may fetch from: HTTP, HTTPS and those of the mirrors configured (a
    mirror on another port is otherwise refused with 403)."""
    mirrors = (cfg.package_proxy.debian_mirror, cfg.graylog.apt_mirror, cfg.kubernetes.apt_mirror)
    ports = {urlsplit(url).port for url in mirrors if url}
    return sorted({80, 443} | {port for port in ports if port})


def warm_up_command(port: int, mirror: str, suite: str) -> str:
    """Fetch the mirror's indexes through the proxy, or fail with one line naming it."""
    base = mirror.rstrip("/")
    urls = [f"{base}/dists/{dist}/InRelease" for dist in (suite, f"{suite}-updates")]
    fetches = " && ".join(
        # A new apt-cacher-ng answers its very first requests 500 for a few seconds.
        "curl -fsS -o /dev/null --max-time 60 --retry 15 --retry-delay 2 --retry-all-errors"
        f" -x http://127.0.0.1:{port} {shlex.quote(url)}"
        for url in urls
    )
    said = shlex.quote(
        f"kubi: the package proxy (apt-cacher-ng on port {port}) cannot fetch {base}'s "
        "indexes: check its upstream (package_proxy.upstream_proxy or apt_proxy) and "
        "/var/log/apt-cacher-ng/apt-cacher.err"
    )
    return f'if ! err=$({{ {fetches}; }} 2>&1); then echo {said} "($err)" >&2; exit 1; fi'


@component("package_proxy")
def package_proxy() -> None:
    cfg = platform()
    settings = cfg.package_proxy
    restart = "systemctl restart apt-cacher-ng"
    upstream, upstream_line = named(
        settings.upstream_proxy or cfg.apt_proxy, UPSTREAM_NAMES["proxy"]
    )
    mirror, mirror_line = named(settings.debian_mirror, UPSTREAM_NAMES["mirror"])
    lines = [line for line in (upstream_line, mirror_line) if line]
    ops.block(
        name="apt-cacher-ng upstream addresses named in /etc/hosts",
        path="/etc/hosts",
        content="\n".join(lines) if lines else None,
        marker="kubi package_proxy",
        required=("127.0.0.1 localhost",),
        # It keeps what it resolved (DnsCacheSeconds); not installed yet on a fresh host.
        reload="! systemctl is-active -q apt-cacher-ng || systemctl restart apt-cacher-ng",
    )
    changes = [ops.packages(name="apt-cacher-ng package", names=["apt-cacher-ng"])]
    changes.append(
        ops.file(
            name="apt-cacher-ng settings",
            path="/etc/apt-cacher-ng/zz_kubi.conf",
            content=render(
                "package_proxy",
                "acng.conf",
                port=settings.port,
                upstream_proxy=upstream,
                user_ports=user_ports(cfg),
            ),
            reload=restart,
        )
    )
    changes.append(
        ops.file(
            name="apt-cacher-ng Debian mirror",
            path="/etc/apt-cacher-ng/backends_debian",
            content=f"{mirror}\n",
            reload=restart,
        )
    )
    changes.append(ops.service(name="apt-cacher-ng running", unit="apt-cacher-ng"))
    # A new apt-cacher-ng 3.7 answers its first requests 500 for a while, and once wedged
    # under the first burst of every host asking for the same index at once (lab CI): wait
    # until it fetches the indexes, alone, before the other hosts' seed asks for them. A
    # proxy that never does fails here, in one line.
    if any(op.will_change for op in changes):  # only then: a converged run changes nothing
        server.shell(
            name="package proxy answers (first fetch of the Debian indexes)",
            commands=[warm_up_command(settings.port, f"{mirror}", cfg.versions.debian)],
        )
    admit_new_hosts(cfg)


def admit_new_hosts(cfg: Platform) -> None:
    """A host added to the platform installs through this proxy in its seed, before the
    firewall component (later in the run) opens the proxy to it: where this host's firewall
    is loaded, the run's rules are loaded now (the firewall component finds them there).
    Not on a host that is also the input host: its rules name operators the bastion may
    make only later in the run."""
    node = me()
    if not cfg.enabled("firewall") or "input" in node.roles:
        return
    state = host.get_fact(FirewallState)
    if state["loaded"] is None:
        return  # no firewall yet: nothing refuses the new hosts
    rules, text = kubi.firewall.rules_file(cfg, node, addresses(), state["uid_range"])
    if rules.ssh_refuses(state["client"]) or state["loaded"] == kubi.firewall.loaded_digest(text):
        return  # the firewall component refuses the former with its message
    path = kubi.firewall.RULES_FILE
    ops.file(
        name="firewall admits every platform host (new ones install through this proxy)",
        path=path,
        content=text,
        check=f"nft -c -f {path}",
        reload=f"nft -f {path}",
    )


if entry_script(__name__):
    package_proxy()

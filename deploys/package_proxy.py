"""package_proxy: apt-cacher-ng on the repository host, so hosts install through it.

With `package_proxy.for_all_hosts`, the seed points every other host's apt at it (by the
repository alias), the source's "offline install" goal: only the repository host needs
to reach a Debian mirror (itself directly, or through `upstream_proxy` / `apt_proxy`).
Runs first in deploys/all.py, before the seed of the other hosts uses it.

    pyinfra inventories/lab.py deploys/package_proxy.py
"""

from kubi import ops
from kubi.deploy import component, entry_script, platform
from kubi.templates import render


@component("package_proxy")
def package_proxy() -> None:
    cfg = platform()
    settings = cfg.package_proxy
    restart = "systemctl restart apt-cacher-ng"
    ops.packages(name="apt-cacher-ng package", names=["apt-cacher-ng"])
    ops.file(
        name="apt-cacher-ng settings",
        path="/etc/apt-cacher-ng/zz_kubi.conf",
        content=render(
            "package_proxy",
            "acng.conf",
            port=settings.port,
            upstream_proxy=settings.upstream_proxy or cfg.apt_proxy,
        ),
        reload=restart,
    )
    ops.file(
        name="apt-cacher-ng Debian mirror",
        path="/etc/apt-cacher-ng/backends_debian",
        content=f"{settings.debian_mirror}\n",
        reload=restart,
    )
    ops.service(name="apt-cacher-ng running", unit="apt-cacher-ng")


if entry_script(__name__):
    package_proxy()

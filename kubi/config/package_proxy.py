"""Settings of the package proxy on the repository host (deploys/package_proxy.py)."""

from __future__ import annotations

from pydantic import Field, StrictBool

from kubi.config.types import HttpUrl, Port, ProxyUrl, Section


class PackageProxySettings(Section):
    """apt-cacher-ng on the repository host (the source's offline-install goal)."""

    port: Port = 3142
    for_all_hosts: StrictBool = Field(False, description="every other host installs through it")
    debian_mirror: HttpUrl = "http://deb.debian.org/debian/"
    upstream_proxy: ProxyUrl | None = Field(
        None, description="proxy the cache itself goes through; default: apt_proxy"
    )

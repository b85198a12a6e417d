"""Settings of the cilium component (deploys/cilium.py): where its pinned chart comes from."""

from __future__ import annotations

from kubi.config.upstream import UpstreamChartSource


class CiliumSettings(UpstreamChartSource):
    """Where the deployer takes Cilium's chart archive (its digest is checked either way)."""

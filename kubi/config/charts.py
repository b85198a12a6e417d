"""Settings of the Helm chart repository on the repository host (deploys/charts.py)."""

from __future__ import annotations

from kubi.config.types import AbsolutePath, Section


class ChartsSettings(Section):
    """Helm chart repository: static index.yaml and archives served by the repository nginx."""

    path: AbsolutePath = "/var/lib/kubi/charts"

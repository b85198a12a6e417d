"""Settings of the container runtime on Kubernetes nodes (deploys/containerd.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictBool

from kubi.config.types import Section


class ContainerdSettings(Section):
    """containerd, runc and the CNI plugins of the Kubernetes nodes, from Debian."""

    cgroup_driver: Literal["systemd", "cgroupfs"] = Field(
        "systemd",
        description="how runc groups containers; the kubelet is configured with the same",
    )
    restrict_oom_score_adj: StrictBool = Field(
        False,
        description="true where nothing may lower an OOM score (nodes that are containers)",
    )

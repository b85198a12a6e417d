"""The host roles of a platform (the inventory's groups) and how they may combine."""

from __future__ import annotations

from typing import Literal

ROLES = ("input", "output", "repository", "control_plane", "workers")
Role = Literal["input", "output", "repository", "control_plane", "workers"]
# Single-node services: the bastion, the log host and the delivery host.
SINGLE_HOST_ROLES = ("input", "output", "repository")
# A host may carry several roles only in these combinations (a small cluster may run
# workloads on its control-plane nodes); service hosts stay apart from the cluster.
ALLOWED_ROLE_SETS = ({"control_plane", "workers"},)
KUBERNETES_ROLES = ("control_plane", "workers")
# The hosts that run nginx and the platform services.
SERVICE_ROLES = SINGLE_HOST_ROLES

"""Settings of the userspaces component (deploys/userspaces.py): each developer's or team's
namespace in the cluster, its members, and the resources it may take."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StrictInt, StrictStr, field_validator

from kubi.config.types import Section, UnixName, full, repeated

# A Kubernetes quantity as a quota or a limit range takes it: "500m", "2", "1.5", "8Gi".
Quantity = Annotated[
    StrictStr,
    AfterValidator(
        full(
            r"[0-9]{1,9}(\.[0-9]{1,3})?(m|k|M|G|T|Ki|Mi|Gi|Ti)?",
            "must be a Kubernetes quantity like '500m', '2', '512Mi' or '8Gi'",
        )
    ),
]
# Namespaces the cluster or kubi keeps for themselves.
RESERVED = ("default", "kube-system", "kube-public", "kube-node-lease", "cilium-secrets")


def _namespace(value: str) -> str:
    full(
        r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?",
        "must be a namespace name: lower-case letters, digits and '-', at most 63",
    )(value)
    if value in RESERVED or value.startswith("kube-") or value.startswith("kubi-"):
        raise ValueError(
            f"{value!r} is a namespace of the cluster or of kubi: give the userspace another name"
        )
    return value


def _member(value: str) -> str:
    # a member's ServiceAccount is named after the person: a DNS label
    full(
        r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?",
        "cannot name a ServiceAccount (lower-case letters, digits and '-' only): "
        "give the person's account such a name to give them a userspace",
    )(value)
    return value


NamespaceName = Annotated[StrictStr, AfterValidator(_namespace)]
Member = Annotated[UnixName, AfterValidator(_member)]


class Quota(Section):
    """The namespace's ResourceQuota: the sum of what its pods may ask and use. A userspace
    opens no port on the nodes and gets no load balancer (NodePort and LoadBalancer
    Services: 0); the platform's ingresses publish applications."""

    requests_cpu: Quantity = "4"
    requests_memory: Quantity = "8Gi"
    limits_cpu: Quantity = "8"
    limits_memory: Quantity = "16Gi"
    pods: Annotated[StrictInt, Field(ge=0, le=10000)] = 50
    persistent_volume_claims: Annotated[StrictInt, Field(ge=0, le=1000)] = 10
    requests_storage: Quantity = "100Gi"


class Limits(Section):
    """The namespace's LimitRange: what a container gets when its pod names no requests or
    limits (every pod needs both under the quota), and the most one container may take."""

    default_request_cpu: Quantity = "100m"
    default_request_memory: Quantity = "128Mi"
    default_cpu: Quantity = "500m"
    default_memory: Quantity = "512Mi"
    max_cpu: Quantity = "2"
    max_memory: Quantity = "4Gi"


class Userspace(Section):
    """One namespace, for the people named in `members` (accounts of `users`)."""

    name: NamespaceName
    members: Annotated[list[Member], Field(min_length=1)]
    quota: Quota = Quota()
    limits: Limits = Limits()

    @field_validator("members")
    @classmethod
    def _once_each(cls, members: list[str]) -> list[str]:
        twice = repeated(members)
        if twice:
            raise ValueError(f"names {', '.join(twice)} more than once")
        return members


class UserspacesSettings(Section):
    """The userspaces of the platform and the pod security they enforce."""

    spaces: list[Userspace] = Field(
        default_factory=list,
        description="one namespace per developer or team; removing one revokes its members' "
        "access and deletes the namespace with everything in it",
    )
    pod_security: Literal["baseline", "restricted"] = Field(
        "baseline",
        description="the Pod Security Standard each userspace enforces: baseline refuses "
        "privileged pods, host namespaces and host paths (a developer never reaches a node "
        "as root); restricted also requires non-root containers without capabilities",
    )

    @field_validator("spaces")
    @classmethod
    def _one_namespace_each(cls, spaces: list[Userspace]) -> list[Userspace]:
        twice = repeated([space.name for space in spaces])
        if twice:
            raise ValueError(f"userspace {', '.join(twice)} is declared more than once")
        return spaces

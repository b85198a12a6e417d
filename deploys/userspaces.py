"""userspaces: each developer's or team's namespace, and its members' kubeconfigs
(kubi/userspaces.py).

The objects go into the cluster through kubi's apply layer, planned by a server-side dry
run (ops.cluster_objects), from the input host's run, once for the platform; a userspace
taken out of the config is pruned with everything in it. Then each person's
`~/.kube/config` on the input host: written, as them, for every member (one context per
userspace); removed, as them, when kubi wrote it and they belong to no userspace any more.
A new member's token exists only once the run made their ServiceAccount: their file is
then written with it at execution.

    pyinfra inventories/prod.py deploys/userspaces.py
"""

from __future__ import annotations

import time

import kubi.userspaces
from kubi import kubeapi, ops
from kubi.apply import ApiUnreachable
from kubi.cluster_pki import cluster_pki
from kubi.config import Platform
from kubi.deploy import component, entry_script, platform
from kubi.inventory import declared
from kubi.secrets import for_platform

TOKEN_WAIT = 60.0  # kube-controller-manager fills a new token Secret within a second or two


@component("userspaces")
def userspaces() -> None:
    cfg = platform()
    names = ", ".join(space.name for space in cfg.userspaces.spaces) or "none"
    ops.cluster_objects(
        name=f"userspaces ({names})",
        component=kubi.userspaces.COMPONENT,
        objects=kubi.userspaces.objects(cfg),
        kinds=kubi.userspaces.KINDS,
    )
    people = tuple(sorted(user.name for user in cfg.users))
    if not people:
        return
    members = kubi.userspaces.memberships(cfg)
    tokens: dict[tuple[str, str], str | None] = {}
    if members:
        try:
            with kubeapi.connected(declared()) as api:
                tokens = kubi.userspaces.read_tokens(api, cfg)
        except ApiUnreachable:  # planned before the run makes the cluster: made at execution
            pass
    ca = cluster_pki(for_platform(cfg)).ca.cert
    for person in people:
        spaces = members.get(person, [])
        content, later = None, None
        if spaces and all(tokens.get((space, person)) for space in spaces):
            content = kubi.userspaces.kubeconfig(cfg, person, tokens, ca, cfg.cockpit.api_port)  # type: ignore[arg-type]
        elif spaces:
            later = lambda person=person: made_at_execution(cfg, person, ca)  # noqa: E731
        ops.home_file(
            name=f"kubeconfig of {person}"
            + (f" ({', '.join(spaces)})" if spaces else " (in no userspace)"),
            person=person,
            path=kubi.userspaces.KUBECONFIG,
            marker=kubi.userspaces.MARKER,
            people=people,
            content=content,
            later=later,
        )


def made_at_execution(cfg: Platform, person: str, ca: str) -> str:
    """`person`'s kubeconfig once the cluster filled their new tokens (bounded wait)."""
    wanted = [(space, person) for space in kubi.userspaces.memberships(cfg)[person]]
    deadline = time.monotonic() + TOKEN_WAIT
    with kubeapi.answering(declared()) as api:
        while True:
            tokens = kubi.userspaces.read_tokens(api, cfg)
            missing = [f"{space}/{kubi.userspaces.token_secret(p)}" for space, p in wanted
                       if not tokens.get((space, p))]  # fmt: skip
            if not missing:
                return kubi.userspaces.kubeconfig(cfg, person, tokens, ca, cfg.cockpit.api_port)  # type: ignore[arg-type]
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"userspaces: no token in Secret {', '.join(missing)} after "
                    f"{TOKEN_WAIT:.0f} s: kube-controller-manager fills it; check that it runs "
                    "(kubi check)"
                )
            time.sleep(1)


if entry_script(__name__):
    userspaces()

"""The components of a platform, in the order `deploys/all.py` converges them.

This list is the one place that names them. `deploys/all.py` runs them in this order, the
config checks the `components` switches against it, the cockpit renders the UI routes it
declares, and the verification suites take each component's hosts from it.

A component called ``<name>`` has, by that same name:

- ``deploys/<name>.py``: a function ``<name>()`` decorated with pyinfra's ``@deploy``,
  which the file also runs when pyinfra is given the file itself;
- ``templates/<name>/``: its Jinja2 templates (when it has any);
- its settings model in ``kubi/config/<name>.py`` and one field of that type in
  ``kubi/config/platform.py``'s ``Settings`` (when it has settings);
- ``tests/verify/test_<name>.py`` and ``tests/plans/test_<name>_plan.py``.

README.md ("Adding a component") gives the recipe; tests/unit/test_component_recipe.py
follows it for a tiny component.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from kubi.roles import KUBERNETES_ROLES, SERVICE_ROLES
from kubi.roles import ROLES as ALL_ROLES


@dataclass(frozen=True)
class UiRoute:
    """A web UI the cockpit publishes as ``http://<name>.localhost:<cockpit port>/``.

    + name: the UI's name (``grafana``); it also answers as ``<name>.<domain>`` upstream
    + title: what the landing page shows
    + backend: where it runs: ``admin_ingress`` (in the cluster, through the admin ingress
      NodePort of the workers) or ``output`` (the output host's nginx, port 80)
    + headers: extra request headers the UI needs behind a proxy (nginx variables allowed)
    + output_host: an in-cluster UI also served by the output host's nginx (port 80, as
      ``<name>.<domain>``) for systems outside the platform, e.g. Prometheus for existing
      collection systems
    """

    name: str
    title: str
    backend: Literal["admin_ingress", "output"]
    headers: tuple[tuple[str, str], ...] = ()
    output_host: bool = False

    def __post_init__(self) -> None:
        if self.output_host and self.backend != "admin_ingress":
            raise ValueError(f"UI {self.name}: only an in-cluster UI is served by the output host")


@dataclass(frozen=True)
class Component:
    """One component of the platform.

    + name: its one name (deploy file, function, templates, settings, tests)
    + summary: one line for people (the README's table says the same)
    + roles: the host roles it runs on; `deploys/all.py` calls it only there
    + settings: the `Settings` field it reads (``None``: it has no section of its own)
    + ui: the web UIs it publishes through the cockpit
    + default: whether it is on when the inventory's ``components`` does not name it
    + needs: components that must be on for it to work
    """

    name: str
    summary: str
    roles: tuple[str, ...]
    settings: str | None
    ui: tuple[UiRoute, ...] = ()
    default: bool = True
    needs: tuple[str, ...] = field(default=())

    @property
    def deploy_file(self) -> str:
        return f"deploys/{self.name}.py"

    @property
    def verify_suite(self) -> str:
        return f"tests/verify/test_{self.name}.py"


COMPONENTS: tuple[Component, ...] = (
    # First: with package_proxy.for_all_hosts the seed of every other host installs
    # through it.
    Component(
        "package_proxy",
        "apt-cacher-ng on the repository host, so every host can install through it",
        roles=("repository",),
        settings="package_proxy",
    ),
    Component(
        "seed",
        "system update, base packages, time, names, SSH hardening; node prerequisites",
        roles=ALL_ROLES,
        settings="seed",
    ),
    Component(
        "nginx",
        "the raw nginx of the service hosts, with folders other components fill",
        roles=SERVICE_ROLES,
        settings="nginx",
        needs=("seed",),
    ),
    Component(
        "bastion",
        "people's accounts (keys only); operators jump, developers do not",
        roles=ALL_ROLES,
        settings="users",
        needs=("seed",),
    ),
    Component(
        "firewall",
        "nftables on every host: each port open only to the hosts that need it; "
        "developers reach only the cockpit",
        roles=ALL_ROLES,
        settings="firewall",
        needs=("seed",),
    ),
    Component(
        "cockpit",
        "every UI and the Kubernetes API behind the input host's 127.0.0.1",
        roles=("input",),
        settings="cockpit",
        needs=("nginx",),
    ),
    Component(
        "registry",
        "Docker registry behind nginx (TLS, basic auth); every host trusts the platform CA",
        roles=ALL_ROLES,
        settings="registry",
        needs=("nginx",),
    ),
    Component(
        "images",
        "the platform's container images copied into its registry; nodes pull through it "
        "(platforms without the internet)",
        roles=("repository",),
        settings="images",
        default=False,
        needs=("registry",),
    ),
    Component(
        "containerd",
        "containerd, runc and the CNI plugins on Kubernetes nodes, pulling through the "
        "platform registry",
        roles=KUBERNETES_ROLES,
        settings="containerd",
        needs=("registry",),
    ),
    Component(
        "api_proxy",
        "haproxy on every Kubernetes node: the API at kube-api.<domain> on its own "
        "127.0.0.1, in front of every control plane",
        roles=KUBERNETES_ROLES,
        settings="api_proxy",
        needs=("seed",),
    ),
    Component(
        "kubernetes",
        "the kubeadm cluster: kubeadm, kubelet and kubectl at the pinned version, the "
        "deployer's cluster PKI, each node's kubeadm configuration",
        roles=KUBERNETES_ROLES,
        settings="kubernetes",
        needs=("containerd", "api_proxy"),
    ),
    Component(
        "cilium",
        "Cilium, the pod network, from its pinned upstream chart, applied through kubi's "
        "tunnel to the API (with kubernetes.pod_network: cilium)",
        roles=("input",),
        settings="cilium",
        needs=("kubernetes", "cockpit"),
    ),
    Component(
        "userspaces",
        "each developer's or team's namespace: its ServiceAccounts, rights in it alone, "
        "quota, limit range, pod security, and each member's kubeconfig on the input host",
        roles=("input",),
        settings="userspaces",
        needs=("kubernetes", "cockpit", "bastion"),
    ),
    Component(
        "ingress",
        "the admin ingress (the platform's UIs, for the cockpit) and the public ingress "
        "(applications, for your load balancer): NGINX Ingress Controller on NodePorts",
        roles=("input",),
        settings="ingress",
        needs=("kubernetes", "cockpit"),
    ),
    Component(
        "dashboard",
        "Headlamp, the Kubernetes dashboard, behind the admin ingress: everyone signs in "
        "with their own token",
        roles=("input",),
        settings=None,
        ui=(UiRoute("dashboard", "Kubernetes dashboard (Headlamp)", backend="admin_ingress"),),
        needs=("kubernetes", "cockpit", "ingress"),
    ),
    Component(
        "charts",
        "the Helm chart repository, served by the registry's TLS server",
        roles=("repository",),
        settings="charts",
        needs=("registry",),
    ),
    Component(
        "graylog",
        "Graylog, OpenSearch and MongoDB, a GELF TCP input, nginx in front",
        roles=("output",),
        settings="graylog",
        ui=(
            UiRoute(
                "graylog",
                "Graylog",
                backend="output",
                # Graylog builds its links from this header: the address the browser uses.
                headers=(("X-Graylog-Server-URL", "http://$http_host/"),),
            ),
        ),
        needs=("nginx",),
    ),
)

NAMES = tuple(c.name for c in COMPONENTS)


def get(name: str) -> Component:
    for component in COMPONENTS:
        if component.name == name:
            return component
    raise KeyError(f"no component {name!r}; the components are {', '.join(NAMES)}")


def switched_on(switches: dict[str, bool]) -> set[str]:
    """The components that are on: those the ``components`` switches turn on, and those on
    by default while every component they need is on. So ``kubernetes: false`` alone
    leaves out everything that runs in the cluster."""
    on: set[str] = set()
    for component in COMPONENTS:  # a component comes after the ones it needs
        if component.name in switches:
            if switches[component.name]:
                on.add(component.name)
        elif component.default and all(need in on for need in component.needs):
            on.add(component.name)
    return on


def left_out(switches: dict[str, bool]) -> list[str]:
    """A notice per component on by default that is off because a component it needs is."""
    on = switched_on(switches)
    notices = []
    for c in COMPONENTS:
        if c.default and c.name not in switches and c.name not in on:
            off = [n for n in c.needs if n not in on]
            which = "which is off" if len(off) == 1 else "which are off"
            notices.append(f"components: {c.name} is off: it needs {' and '.join(off)}, {which}")
    return notices


def check_switches(switches: dict[str, bool]) -> list[str]:
    """Problems of the inventory's ``components`` switches: unknown names, and a component
    turned on while one it needs is off."""
    import difflib

    problems = []
    for name in switches:
        if name not in NAMES:
            close = difflib.get_close_matches(name, NAMES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(
                f"field 'components.{name}': unknown component{hint}; the components are "
                f"{', '.join(NAMES)}"
            )
    on = switched_on({name: value for name, value in switches.items() if name in NAMES})
    for component in COMPONENTS:
        if component.name in on:
            for needed in component.needs:
                if needed not in on:
                    problems.append(
                        f"field 'components': {component.name} is on but {needed}, which it "
                        f"needs, is off: turn {needed} on or {component.name} off"
                    )
    return problems

"""`kubi upgrade`: the cluster to the inventory's `versions.kubernetes`, one node at a time.

A converge refuses to move a cluster's version (deploys/kubernetes.py): every node's
packages would move at once. The upgrade goes the way kubeadm's own procedure says:

- control planes first, in inventory order: the first runs `kubeadm upgrade apply`, the
  others `kubeadm upgrade node`; then the workers, one at a time, `kubeadm upgrade node`;
- on each node: kubeadm from the new version's channel, the kubeadm step, the node drained,
  kubelet and kubectl from the channel and the kubelet restarted, the node Ready at the
  new version, then uncordoned.

The plan is computed from what the nodes run (`gather`), never from a record of an earlier
run: a run stopped half-way (a failed step, a lost host) is resumed by running the same
command again, and a cluster already at the version has nothing to do. A minor is never
skipped, and a downgrade is refused, before anything changes.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from kubi import aptsource, kubeadm, kubernetes, ops
from kubi.cluster_ops import KUBECTL, ClusterOpError, drain_node
from kubi.config import Host, Platform

# Set on a node kubi drained for the upgrade, so that a run stopped before the uncordon
# uncordons it the next time, and a node an operator cordoned stays cordoned.
DRAINED = "kubi.io/drained-for-upgrade"
VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


class UpgradeRefused(ClusterOpError):
    """The upgrade would break Kubernetes' rules; nothing was changed."""


@dataclass(frozen=True)
class NodeVersions:
    """What a node runs: kubeadm's and the kubelet's versions (``1.33.3``), and whether its
    kubelet is in the cluster."""

    kubeadm: str | None
    kubelet: str | None
    joined: bool


@dataclass(frozen=True)
class Cluster:
    """The cluster as a control plane's admin sees it.

    + version: the ClusterConfiguration's kubernetesVersion (what `upgrade apply` moves)
    + drained: nodes unschedulable with kubi's DRAINED annotation
    + cordoned: nodes an operator made unschedulable: they stay so after their upgrade
    """

    version: str
    drained: frozenset[str] = frozenset()
    cordoned: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Step:
    """One command of the upgrade. `on_control_plane`: it runs as the cluster's admin on a
    control plane (kubectl), not on the node itself."""

    node: str
    what: str
    command: str
    on_control_plane: bool = False


def parse_version(text: str) -> tuple[int, int, int]:
    found = VERSION.fullmatch(text.strip())
    if not found:
        raise ValueError(f"not a Kubernetes version: {text!r}")
    major, minor, patch = (int(part) for part in found.groups())
    return major, minor, patch


# --- what the nodes run --------------------------------------------------------------------

NODE_VERSIONS = (
    "printf 'kubeadm=%s\\n' \"$(kubeadm version -o short 2>/dev/null)\"; "
    "printf 'kubelet=%s\\n' \"$(kubelet --version 2>/dev/null)\"; "
    f"{kubeadm.JOINED} && echo joined=yes; true"
)
CLUSTER_STATE = (
    f"{KUBECTL} -n kube-system get configmap kubeadm-config "
    "-o jsonpath='{.data.ClusterConfiguration}' && echo && echo '---' && "
    f"{KUBECTL} get nodes -o json"
)


def parse_node_versions(output: str) -> NodeVersions:
    found = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)

    def version(text: str) -> str | None:
        match = VERSION.search(text)
        return ".".join(match.groups()) if match else None

    return NodeVersions(
        kubeadm=version(found.get("kubeadm", "")),
        kubelet=version(found.get("kubelet", "")),
        joined=found.get("joined") == "yes",
    )


def parse_cluster(output: str) -> Cluster:
    configuration, _, nodes = output.partition("\n---\n")
    version = str(yaml.safe_load(configuration)["kubernetesVersion"]).lstrip("v")
    drained: set[str] = set()
    cordoned: set[str] = set()
    for item in json.loads(nodes)["items"]:
        if item.get("spec", {}).get("unschedulable"):
            ours = DRAINED in item["metadata"].get("annotations", {})
            (drained if ours else cordoned).add(item["metadata"]["name"])
    return Cluster(version, frozenset(drained), frozenset(cordoned))


def gather(
    declared, connect: Callable[[str, dict], Any]
) -> tuple[dict[str, NodeVersions], Cluster]:
    """Each Kubernetes node's versions, and the cluster's from the first control plane that
    answers. A node that cannot be reached stops the upgrade: it would stay behind."""
    platform: Platform = declared.config
    observed: dict[str, NodeVersions] = {}
    for node in _nodes(platform):
        try:
            with connect(node.name, declared.host_data(node.name)) as target:
                done = target.run(NODE_VERSIONS)
        except Exception as exc:  # noqa: BLE001  (named, with what to do)
            raise UpgradeRefused(
                f"{node.name} cannot be reached ({exc}): bring it back, or take it out of "
                "the cluster with kubi node remove, before an upgrade"
            ) from exc
        observed[node.name] = parse_node_versions(done.stdout.decode(errors="replace"))
    problems = []
    for cp in platform.role("control_plane"):
        if not observed[cp.name].joined:
            continue
        with connect(cp.name, declared.host_data(cp.name)) as target:
            done = target.run(CLUSTER_STATE)
        if done.returncode == 0:
            return observed, parse_cluster(done.stdout.decode(errors="replace"))
        problems.append(f"{cp.name}: {done.stderr.decode(errors='replace').strip()[-300:]}")
    raise ClusterOpError(
        "no control plane told the cluster's version: " + ("; ".join(problems) or "none joined")
    )


# --- the plan ------------------------------------------------------------------------------


def _nodes(platform: Platform) -> list[Host]:
    """Control planes first (inventory order), then the workers."""
    control_planes = platform.role("control_plane")
    workers = [h for h in platform.hosts if h.is_kubernetes_node and h not in control_planes]
    return [*control_planes, *workers]


def _refuse_skew(target: str, cluster: Cluster, observed: dict[str, NodeVersions]) -> None:
    want, have = parse_version(target), parse_version(cluster.version)
    if want < have:
        raise UpgradeRefused(
            f"the cluster runs v{cluster.version} and versions.kubernetes says {target}: "
            "Kubernetes does not go back a version; put the running version back in the inventory"
        )
    if want[:2] > (have[0], have[1] + 1):
        step = f"{have[0]}.{have[1] + 1}"
        raise UpgradeRefused(
            f"v{cluster.version} to {target} skips a minor: upgrade to a {step} release first "
            f"(versions.kubernetes: {step}.<patch>, kubi upgrade --yes), then to {target}"
        )
    for name, node in observed.items():
        if node.kubelet and parse_version(node.kubelet) > want:
            raise UpgradeRefused(
                f"{name}'s kubelet runs v{node.kubelet}, newer than {target}: "
                "Kubernetes does not go back a version"
            )


def plan(platform: Platform, observed: dict[str, NodeVersions], cluster: Cluster) -> list[Step]:
    """The steps that bring every node of the cluster to `versions.kubernetes`; empty when
    it runs it already. Refuses (UpgradeRefused) a downgrade or a skipped minor."""
    target = platform.versions.kubernetes
    _refuse_skew(target, cluster, observed)
    steps: list[Step] = []
    apply_pending = cluster.version != target
    for node in _nodes(platform):
        seen = observed[node.name]
        if not seen.joined:
            continue  # the next converge joins it, at the new version
        is_cp = "control_plane" in node.roles
        behind = seen.kubeadm != target or seen.kubelet != target
        if not behind and not (apply_pending and is_cp):
            if node.name in cluster.drained:  # a run stopped before its uncordon
                steps.append(Step(node.name, "uncordoned", uncordon(node.name), True))
            continue
        steps.append(Step(node.name, f"kubeadm {target}", packages(platform, node, ("kubeadm",))))
        if apply_pending and is_cp:
            steps.append(
                Step(node.name, f"kubeadm upgrade apply v{target}", upgrade_apply(platform))
            )
            apply_pending = False
        else:
            steps.append(Step(node.name, "kubeadm upgrade node", upgrade_node(platform)))
        kept = node.name in cluster.cordoned
        steps.append(Step(node.name, "drained", drain(node.name, mark=not kept), True))
        steps.append(
            Step(
                node.name,
                f"kubelet and kubectl {target}, kubelet restarted",
                packages(platform, node, ("kubelet", "kubectl"))
                + " && systemctl daemon-reload && systemctl restart kubelet",
            )
        )
        steps.append(
            Step(
                node.name,
                f"Ready at v{target}, " + ("left cordoned as it was" if kept else "uncordoned"),
                ready(node.name, target, then_uncordon=not kept),
                True,
            )
        )
    return steps


def render(steps: list[Step], target: str) -> str:
    if not steps:
        return f"every node of the cluster runs v{target}: nothing to upgrade"
    lines = [f"kubi upgrade to v{target}, in this order:"]
    lines += [f"  {step.node:<20} {step.what}" for step in steps]
    return "\n".join(lines)


# --- the commands --------------------------------------------------------------------------


# kubeadm's preflight checks of the CoreDNS it would upgrade: with none deployed they fail
# ("start version '' not supported", measured on the lab), and there is nothing to check.
NO_COREDNS_CHECKS = ["CoreDNSUnsupportedPlugins", "CoreDNSMigration"]


def _kubeadm_flags(platform: Platform) -> str:
    flags = []
    ignored = list(platform.kubernetes.ignore_preflight_errors)
    if platform.kubernetes.kubeadm_patches:
        flags.append(f"--patches {kubeadm.PATCHES_DIR}")
    if not platform.kubernetes.coredns:
        flags.append("--skip-phases addon/coredns")
        ignored += NO_COREDNS_CHECKS
    if ignored:
        flags.append("--ignore-preflight-errors " + ",".join(ignored))
    return " ".join(flags)


def upgrade_apply(platform: Platform) -> str:
    return (
        f"kubeadm upgrade apply v{platform.versions.kubernetes} --yes {_kubeadm_flags(platform)}"
        f" >/dev/null && {kubeadm.wait_local_api()}"
    )


def upgrade_node(platform: Platform) -> str:
    return f"kubeadm upgrade node {_kubeadm_flags(platform)} >/dev/null"


def _staged(path: str, content: str) -> str:
    """Shell that writes `content` (no secret: it is on the command line) as `path`.kubi-new,
    0644: the bytes the converge writes, so that the next converge changes nothing."""
    return f"(umask 022 && printf %s {shlex.quote(content)} > {path}.kubi-new)"


def _write(path: str, content: str) -> str:
    return f"{_staged(path, content)} && mv -f {path}.kubi-new {path}"


# What each package step checks after its install: the binary's own word for its version.
VERSION_CHECK = {
    "kubeadm": ("kubeadm version -o short", "v{}"),
    "kubelet": ("kubelet --version", "Kubernetes v{}"),
}


def packages(platform: Platform, node: Host, names: tuple[str, ...]) -> str:
    """Shell that points the node's Kubernetes repository at the version's channel, pins
    the version, and installs `names` at it; the first name's binary must then say that
    version. The new channel is checked first: an unreachable one changes nothing."""
    source = kubernetes.apt_source(platform)  # of versions.kubernetes, the target
    mirror, proxy = platform.kubernetes.apt_mirror, platform.apt_proxy_for(node)
    asked, expected = VERSION_CHECK[names[0]]
    expected = expected.format(platform.versions.kubernetes)
    said = shlex.quote(f"kubi: {names[0]} does not say {expected} after its install")
    listed = source.sources_path
    # apt reads no file of that name: checked there, it replaces the old channel's file.
    staged = dataclasses.replace(source, sources_path=f"{listed}.kubi-new")
    return (
        f"{_staged(listed, aptsource.sources_list(source, mirror, proxy))} && "
        f"{{ {aptsource.repository_check_command(staged, mirror, proxy)} || "
        f"{{ rm -f {listed}.kubi-new; exit 1; }}; }} && mv -f {listed}.kubi-new {listed} && "
        f"{_write(kubernetes.PREFERENCES_PATH, aptsource.apt_preferences([source]))} && "
        + ops.apt_install(names)
        + f' && {{ [ "$({asked})" = {shlex.quote(expected)} ] || {{ echo {said} >&2; exit 1; }}; }}'
    )


def drain(name: str, mark: bool = True) -> str:
    """Shell: drain the node; `mark` it as kubi's to uncordon (not one an operator cordoned)."""
    node = shlex.quote(name)
    annotate = f"{KUBECTL} annotate node {node} {DRAINED}=yes --overwrite >/dev/null && "
    return (annotate if mark else "") + f"{drain_node(node, 300)} >/dev/null"


def ready(name: str, target: str, seconds: int = 180, then_uncordon: bool = True) -> str:
    """Shell: wait until the node's kubelet reports the version and Ready, then uncordon."""
    node = shlex.quote(name)
    jsonpath = shlex.quote(
        '{.status.nodeInfo.kubeletVersion} {.status.conditions[?(@.type=="Ready")].status}'
    )
    reported = f"[ \"$({KUBECTL} get node {node} -o jsonpath={jsonpath})\" = 'v{target} True' ]"
    said = f"kubi: {name} was not Ready at v{target} within {seconds} s"
    return kubeadm.until(reported, said, seconds) + (
        f" && {uncordon(name)}" if then_uncordon else ""
    )


def uncordon(name: str) -> str:
    node = shlex.quote(name)
    return (
        f"{KUBECTL} uncordon {node} >/dev/null && "
        f"{KUBECTL} annotate node {node} {DRAINED}- >/dev/null"
    )


# --- running it ----------------------------------------------------------------------------


def execute(
    declared, steps: list[Step], connect: Callable[[str, dict], Any], log: Callable[[str], None]
) -> None:
    """Each step in order; kubectl steps on the first control plane that answers, the node
    itself last (it may be the one restarting). Stops at the first failure, saying how far
    it went: the same command goes on from there."""
    platform: Platform = declared.config
    control_planes = [h.name for h in platform.role("control_plane")]
    for step in steps:
        where = [step.node]
        if step.on_control_plane:
            where = [cp for cp in control_planes if cp != step.node] + [
                cp for cp in control_planes if cp == step.node
            ]
        problems: list[str] = []
        for name in where:
            try:
                with connect(name, declared.host_data(name)) as target:
                    done = target.run(step.command)
            except Exception as exc:  # noqa: BLE001  (another control plane may answer)
                problems.append(f"{name}: {exc}")
                continue
            if done.returncode == 0:
                break
            # The command itself failed: another control plane would fail the same way.
            problems.append(f"{name}: {done.stderr.decode(errors='replace').strip()[-400:]}")
            break
        else:
            done = None
        if done is None or done.returncode != 0:
            raise ClusterOpError(
                f"{step.node}: {step.what} failed: {'; '.join(problems)}; the steps before "
                "it are done: once the cause is fixed, kubi upgrade --yes goes on from here"
            )
        log(f"{step.node}: {step.what}")

"""The running lab as a kubi platform: its groups, people, package proxy and whether the log
stack can be installed. The one lab module that knows the platform config; the engine
(plan, machine, rootfs, hosts) knows nothing of components.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from kubi.aptsource import through_proxy
from kubi.config import validate
from kubi.graylog import upstream_repositories
from kubi.lab import machine, plan
from kubi.lab.plan import GATEWAY, SUBNET, LabState, Log

# People of the lab platform, one per role, so the bastion can be tested for real.
LAB_PEOPLE = (("lab-ops", "ops"), ("lab-dev", "dev"))
REACHABILITY_TTL = 600.0  # seconds a reachability verdict is reused by later runs


def person_key(name: str) -> Path:
    """Private key of a lab person (generated once, 0600); the public half goes in the config."""
    path = plan.LAB_DIR / "people" / name / "id_ed25519"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        machine.run(
            "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@kubi-lab", "-f", path
        )
    return path


def _fetch_status(url: str, timeout: float) -> int | None:
    """HTTP status of a GET through the machine's package proxy (None: no answer at all)."""
    proxy = plan.APT_PROXY
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy}))
    try:
        with opener.open(through_proxy(url, proxy), timeout=timeout) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def reachable(urls: list[str], timeout: float = 5.0) -> dict[str, bool]:
    """Whether this machine can fetch each URL, asked through its own package proxy.

    The proxy is the lab hosts' only way out, so this is exactly what they can reach. An
    upstream answer (even 404) counts; the proxy's own 5xx (name, connection or TLS
    failure upstream) does not. Verdicts are reused for REACHABILITY_TTL seconds.
    """
    cache = plan.LAB_DIR / "reachability.json"
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    now = time.time()
    result = {}
    for url in urls:
        entry = known.get(url)
        if entry is None or now - entry["at"] > REACHABILITY_TTL:
            status = _fetch_status(url, timeout)
            entry = {"at": now, "ok": status is not None and status < 500}
            known[url] = entry
        result[url] = entry["ok"]
    with contextlib.suppress(OSError):
        machine.write(cache, json.dumps(known))
    return result


def _log_stack_setting(description: dict, log: Log) -> dict:
    """graylog.install for the lab: on only when the log stack's repositories answer."""
    # Only a peek: the inventory declares (and validates) the description right after.
    repositories = upstream_repositories(validate(description, source="lab", notices=False))
    verdicts = reachable([url for _, url in repositories])
    missing = [name for name, url in repositories if not verdicts[url]]
    if missing:
        log(
            f"lab: notice: the log stack's repositories are not reachable from this machine "
            f"({', '.join(missing)}): Graylog is left out (graylog.install=false)"
        )
    return {"install": not missing}


def _kubernetes_settings(description: dict, log: Log) -> None:
    """The cluster part of the lab: its packages from the lab's own mirror (kubi lab up made
    it from the real binaries), signed by the lab's key, pinned as production pins upstream's;
    without the binaries the kubernetes component is off, said in one line."""
    from kubi.lab import kubernetes, mirror

    if kubernetes.missing_binaries(kubernetes.bin_dir()) or not mirror.serving():
        log(
            f"lab: notice: no Kubernetes binaries in {kubernetes.bin_dir()} "
            f"({kubernetes.BIN_ENV}) or no lab mirror: the cluster is left out "
            "(components.kubernetes=false); see docs/lab.md"
        )
        description["components"] = {"kubernetes": False}  # and what runs in the cluster
        return
    # Nodes pull the images kubi lab up made through the platform registry, as an air-gapped
    # platform does (deploys/images.py copies them in).
    # No Cilium image can be had here: the bridge pod network instead (below); the tests
    # still pass Cilium's objects through the lab's API server in a dry run.
    description["components"] = {"images": True, "cilium": False}
    description["images"] = {"archives": str(kubernetes.images_dir())}
    _ingress_settings(description, log)
    # The lab's developer gets a userspace, and its kubeconfig on the input host.
    description["userspaces"] = {"spaces": [{"name": "lab-dev", "members": ["lab-dev"]}]}
    version = kubernetes.kubeadm_version(kubernetes.bin_dir()).removeprefix("v")
    description["versions"] = {"kubernetes": version}
    description["kubernetes"] = {
        "apt_mirror": plan.LAB_MIRROR,
        "packages_key": kubernetes.key_fingerprint(),
        # No CoreDNS image can be made here (docs/lab.md); the nodes are containers.
        "coredns": False,
        "nodes_are_containers": True,
        # No Cilium image either: the nodes share the lab bridge, so pods are routed there.
        "pod_network": "bridge",
        "kubeadm_patches": str(kubernetes.patches_dir()),
        # Binaries built with a Go whose URL parser refuses kubeadm's probe URL
        # `https://[<IP>]:1234/` fail this check by an artefact of the toolchain.
        "ignore_preflight_errors": ["HTTPProxyCIDR"],
    }


def _ingress_settings(description: dict, log: Log) -> None:
    """The ingress controllers, when the machine holds their chart (KUBI_LAB_CHARTS) and
    their image's OCI archive (beside the lab's own images); else off, said in one line."""
    from kubi import ingress, upstream_charts
    from kubi.config import matrices
    from kubi.images import Image
    from kubi.lab import kubernetes

    charts = Path(os.environ.get("KUBI_LAB_CHARTS", "/var/cache/kubi-charts"))
    wanted = [charts / upstream_charts.archive_name(ingress.CHART)] + [
        kubernetes.images_dir() / Image(ref).archive_name
        for ref in matrices.upstream_chart(ingress.CHART).all_images
    ]
    missing = [str(path) for path in wanted if not path.is_file()]
    if missing:
        log(
            f"lab: notice: the ingress controllers' chart or image cannot be had here (no "
            f"{', '.join(missing)}): the ingress is left out (components.ingress=false)"
        )
        description["components"]["ingress"] = False  # and the dashboard behind it
        return
    description["ingress"] = {"charts": str(charts)}


def _to_stderr(message: str) -> None:
    # stderr: pyinfra's own log stream (stdout may carry its --json output)
    print(message, file=sys.stderr)


def platform_description(state: LabState, log: Log = _to_stderr) -> dict:
    """The platform description of a running lab, for `kubi.inventory.declare`.

    Every address is first checked to route through the lab bridge (the safety rule).
    """
    groups: dict[str, list] = {}
    for host in state.hosts:
        machine.check_route(host.address)
        groups.setdefault(host.role, []).append((host.name, {"address": host.address}))
    people = [
        {"name": name, "role": role, "keys": [person_key(name).with_suffix(".pub").read_text()]}
        for name, role in LAB_PEOPLE
    ]
    description = {
        "name": "lab",
        "groups": groups,
        "domain": "lab.kubi.internal",
        "apt_proxy": state.apt_proxy,
        "secrets_dir": str(plan.LAB_DIR / "secrets"),
        "ssh": {
            "user": state.deploy_user,
            "key": str(state.ssh_key),
            # Each lab host has its own host key; `up` records them all.
            "strict_host_key_checking": "yes",
            "known_hosts_file": str(plan.known_hosts_file()),
        },
        "network": {"host_cidrs": [str(SUBNET)]},
        # The machine (the bridge's address) deploys, verifies and tests every host directly.
        "firewall": {"admin_networks": [f"{GATEWAY}/32"]},
        "users": people,
        # Prove the offline-install path: hosts install through the repository host, whose
        # cache goes through the machine's proxy (apt_proxy).
        "package_proxy": {"for_all_hosts": True},
        # Nodes are containers here: they share the machine's cgroup v1 hierarchy (measured
        # with cgroupfs, docs/kubernetes-lab.md) and may not lower an OOM score.
        # Debian's containerd (1.6): Docker's repository is not reachable from the lab, and
        # the lab's binaries are 1.33, which it runs.
        "containerd": {
            "source": "debian",
            "cgroup_driver": "cgroupfs",
            "restrict_oom_score_adj": True,
        },
    }
    _kubernetes_settings(description, log)
    description["graylog"] = _log_stack_setting(description, log)
    return description

"""The `kubi` command: check and show a platform config, run the local lab, publish charts."""

from __future__ import annotations

import argparse
import json
import sys

from kubi import components
from kubi.charts import ChartError
from kubi.cluster_ops import ClusterOpError
from kubi.config import ConfigError
from kubi.etcd import SnapshotError
from kubi.lab import LabError
from kubi.ssh import SshError


def _config_check(args: argparse.Namespace) -> int:
    from kubi.inventory import load

    declared = load(args.inventory)
    hosts = declared.config.hosts
    print(f"{declared.source}: ok ({len(hosts)} hosts, platform {declared.config.name!r})")
    return 0


def _config_show(args: argparse.Namespace) -> int:
    from kubi.inventory import load

    declared = load(args.inventory)
    # mode="json" renders SecretStr fields as '**********': secrets never reach the terminal.
    effective = declared.config.model_dump(mode="json")
    # Every component by name, on or off, in converge order (not only the switches given).
    effective["components"] = {
        c.name: declared.config.enabled(c.name) for c in components.COMPONENTS
    }
    print(json.dumps(effective, indent=2))
    return 0


def _lab_up(args: argparse.Namespace) -> int:
    from kubi import lab

    state = lab.up(
        total=args.hosts, control_planes=args.control_planes, deploy_user=args.deploy_user
    )
    for host in state.hosts:
        print(f"{host.name:<18} {host.role:<14} {host.address}")
    print("next: pyinfra inventories/lab.py deploys/all.py")
    return 0


def _lab_status(args: argparse.Namespace) -> int:
    from kubi import lab

    rows = lab.status()
    if not rows:
        print("lab: down (no hosts)")
        return 0
    for row in rows:
        running = "running" if row["running"] else "stopped"
        ssh = "ssh ok" if row["ssh"] else "no ssh"
        print(f"{row['name']:<18} {row['role']:<14} {row['address']:<12} {running:<8} {ssh}")
    return 0 if all(r["running"] and r["ssh"] for r in rows) else 1


def _lab_stop(args: argparse.Namespace) -> int:
    from kubi import lab

    lab.stop(args.hosts, kill=args.kill)
    return 0


def _lab_start(args: argparse.Namespace) -> int:
    from kubi import lab

    lab.start(args.hosts)
    return 0


def _lab_down(args: argparse.Namespace) -> int:
    from kubi import lab

    lab.down()
    return 0


def _charts_publish(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kubi import charts, registry
    from kubi.inventory import load

    declared = load(args.inventory)
    store, host = charts.chart_store_for(declared)
    try:
        result = charts.publish(
            Path(args.chart),
            store,
            force=args.force,
            kube_version=declared.config.versions.kubernetes,
            log=print,
        )
    finally:
        host.close()
    what = {"published": "published", "replaced": "replaced (--force)", "unchanged": "unchanged"}
    print(
        f"{result.name} {result.version}: {what[result.outcome]} in "
        f"{registry.charts_url(declared.config)} ({result.charts} chart version(s) in the index)"
    )
    return 0


def _charts_mirror(args: argparse.Namespace) -> int:
    from kubi import charts, registry, upstream_charts
    from kubi.inventory import load

    declared = load(args.inventory)
    used = upstream_charts.used(declared.config)
    if not used:
        print("no component that is on renders an upstream chart: nothing to mirror")
        return 0
    # every archive, downloaded and checked, before anything is published
    archives = {
        name: upstream_charts.archive(name, upstream_charts.source(declared.config, field))
        for name, field in used.items()
    }
    store, host = charts.chart_store_for(declared)
    try:
        done = charts.mirror(archives, store, log=print)
    finally:
        host.close()
    url = registry.charts_url(declared.config)
    for result in done:
        print(f"{result.name} {result.version}: {result.outcome} in {url}")
    return 0


def _check(args: argparse.Namespace) -> int:
    import time

    from kubi import check
    from kubi.inventory import load
    from kubi.ssh import SshHost

    declared = load(args.inventory)
    if not declared.config.enabled("kubernetes"):
        print(f"kubi: the kubernetes component is off in {args.inventory}", file=sys.stderr)
        return 2
    nodes, cluster = check.gather(declared, SshHost)
    findings = check.judge(
        nodes, cluster, [h.name for h in declared.config.role("control_plane")], time.time()
    )
    print(check.render(findings))
    return check.exit_code(findings)


def _etcd_snapshot(args: argparse.Namespace) -> int:
    from kubi import etcd
    from kubi.inventory import load
    from kubi.ssh import SshHost

    taken = etcd.snapshot(load(args.inventory), SshHost)
    print(
        f"{taken.path}: etcd snapshot from {taken.source}, revision {taken.revision}, "
        f"{taken.keys} keys, {taken.size} bytes (mode 0600: it holds the cluster's Secrets)"
    )
    return 0


def _etcd_restore(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kubi import etcd
    from kubi.inventory import load
    from kubi.ssh import SshHost

    declared = load(args.inventory)
    snapshot = Path(args.snapshot)
    if not snapshot.is_file():
        print(f"kubi: no snapshot file {snapshot}", file=sys.stderr)
        return 2
    cps = [h.name for h in declared.config.role("control_plane")]
    if not args.yes:
        print(
            f"kubi: this resets {', '.join(cps)} and starts the cluster again on {cps[0]} from "
            f"{snapshot}: everything written since that snapshot is lost; add --yes to do it",
            file=sys.stderr,
        )
        return 2
    etcd.restore(declared, snapshot, SshHost, log=print)
    return 0


def _certs_renew(args: argparse.Namespace) -> int:
    from kubi import cluster_ops
    from kubi.inventory import load
    from kubi.ssh import SshHost

    cluster_ops.renew_certificates(load(args.inventory), SshHost, log=print)
    return 0


def _node_remove(args: argparse.Namespace) -> int:
    from kubi import cluster_ops
    from kubi.inventory import load
    from kubi.ssh import SshHost

    declared = load(args.inventory)
    known = [h.name for h in declared.config.hosts if h.is_kubernetes_node]
    if args.node not in known:
        print(f"kubi: no Kubernetes node {args.node!r} in {args.inventory}: {', '.join(known)}",
              file=sys.stderr)  # fmt: skip
        return 2
    cluster_ops.remove_node(declared, args.node, SshHost, log=print)
    return 0


def _upgrade(args: argparse.Namespace) -> int:
    from kubi import upgrade
    from kubi.inventory import load
    from kubi.ssh import SshHost

    declared = load(args.inventory)
    target = declared.config.versions.kubernetes
    observed, cluster = upgrade.gather(declared, SshHost)
    steps = upgrade.plan(declared.config, observed, cluster)
    print(upgrade.render(steps, target))
    if steps and not args.yes:
        print("kubi: nothing changed; add --yes to run these steps", file=sys.stderr)
        return 0
    upgrade.execute(declared, steps, SshHost, log=print)
    if steps:
        print(f"the cluster runs v{target}; a converge (deploys/all.py) now agrees with it")
    return 0


def _kubeconfig(args: argparse.Namespace) -> int:
    from kubi import kubeapi, userspaces
    from kubi.cluster_pki import cluster_pki
    from kubi.inventory import load
    from kubi.secrets import for_platform

    declared = load(args.inventory)
    platform = declared.config
    if not platform.enabled("userspaces"):
        print(f"kubi: the userspaces component is off in {args.inventory}", file=sys.stderr)
        return 2
    if not userspaces.memberships(platform).get(args.person):
        print(
            f"kubi: {args.person} is in no userspace of {args.inventory}: add them to the "
            "members of one (userspaces.spaces)",
            file=sys.stderr,
        )
        return 2
    with kubeapi.connected(declared) as api:
        tokens = userspaces.read_tokens(api, platform)
    ca = cluster_pki(for_platform(platform)).ca.cert
    try:
        config, line = userspaces.for_workstation(platform, args.person, tokens, ca, args.port)
    except userspaces.UserspaceError as problem:
        print(f"kubi: {problem}", file=sys.stderr)
        return 2
    print(f"kubi: reach the API through the input host first: {line}", file=sys.stderr)
    sys.stdout.write(config)
    return 0


def _unlock(args: argparse.Namespace) -> int:
    from kubi import runlock
    from kubi.inventory import load
    from kubi.ssh import SshHost

    declared = load(args.inventory)
    known = [h.name for h in declared.config.hosts]
    unknown = [name for name in args.hosts if name not in known]
    if unknown:  # before any connection
        print(
            f"kubi: no host {unknown[0]!r} in {args.inventory}: {', '.join(known)}", file=sys.stderr
        )
        return 2
    for name in args.hosts:
        with SshHost(name, declared.host_data(name)) as target:
            done = target.run(runlock.unlock_script())
        print(f"{name}: {done.stdout.decode(errors='replace').strip() or done.stderr.decode()}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="kubi", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    config = sub.add_parser("config", help="validate or show a platform description")
    config_sub = config.add_subparsers(dest="action", required=True)
    for name, func, text in (
        ("check", _config_check, "validate an inventory without connecting anywhere"),
        ("show", _config_show, "print the effective config, defaults filled in, secrets masked"),
    ):
        cmd = config_sub.add_parser(name, help=text)
        cmd.add_argument("inventory", help="inventory file, e.g. inventories/prod.py")
        cmd.set_defaults(func=func)

    lab = sub.add_parser("lab", help="local lab of real Debian hosts (systemd-nspawn, root)")
    lab_sub = lab.add_subparsers(dest="action", required=True)
    up = lab_sub.add_parser("up", help="start the lab (idempotent)")
    up.add_argument("--hosts", type=int, default=5, help="total hosts; extra ones are workers")
    up.add_argument("--control-planes", type=int, default=1, help="control-plane hosts (odd)")
    up.add_argument(
        "--deploy-user",
        help="deploy as this admin account with sudo instead of root "
        "(default: $KUBI_LAB_DEPLOY_USER, else root)",
    )
    up.set_defaults(func=_lab_up)
    lab_sub.add_parser("status", help="show lab hosts").set_defaults(func=_lab_status)
    stop = lab_sub.add_parser("stop", help="power lab hosts off, keeping their disks")
    stop.add_argument("hosts", nargs="+", metavar="HOST", help="e.g. lab-worker1")
    stop.add_argument(
        "--kill", action="store_true", help="a power cut: no orderly shutdown, no goodbye"
    )
    stop.set_defaults(func=_lab_stop)
    start = lab_sub.add_parser("start", help="boot stopped lab hosts again from their disks")
    start.add_argument("hosts", nargs="+", metavar="HOST", help="e.g. lab-worker1")
    start.set_defaults(func=_lab_start)
    lab_sub.add_parser("down", help="stop the lab, leave nothing behind").set_defaults(
        func=_lab_down
    )

    charts = sub.add_parser("charts", help="the Helm chart repository of the repository host")
    charts_sub = charts.add_subparsers(dest="action", required=True)
    publish = charts_sub.add_parser(
        "publish",
        help="lint (Helm, strict), package and publish a chart; the index keeps every other chart",
    )
    publish.add_argument("chart", help="chart folder or packaged .tgz")
    publish.add_argument(
        "--inventory", required=True, help="inventory of the platform, e.g. inventories/prod.py"
    )
    publish.add_argument(
        "--force", action="store_true", help="replace a published version that has other content"
    )
    publish.set_defaults(func=_charts_publish)
    mirror = charts_sub.add_parser(
        "mirror",
        help="publish the pinned upstream charts the platform's components render, as they "
        "are (their digest checked), for a platform without the internet",
    )
    mirror.add_argument(
        "--inventory", required=True, help="inventory of the platform, e.g. inventories/prod.py"
    )
    mirror.set_defaults(func=_charts_mirror)

    unlock = sub.add_parser(
        "unlock",
        help="end the run holding these hosts' deploy lock (one whose deployer vanished)",
    )
    unlock.add_argument("hosts", nargs="+", metavar="HOST", help="host names of the inventory")
    unlock.add_argument("--inventory", required=True, help="e.g. inventories/prod.py")
    unlock.set_defaults(func=_unlock)

    _with_inventory(
        sub, "check", _check, "the cluster's health: nodes, control plane pods, etcd, "
        "certificates (OK / WARN / FAIL; exit 1 on FAIL)",
    )  # fmt: skip
    etcd = sub.add_parser("etcd", help="the cluster's etcd").add_subparsers(
        dest="etcd_command", required=True
    )
    _with_inventory(
        etcd, "snapshot", _etcd_snapshot,
        "save a snapshot from a control plane into the platform's secrets",
    )  # fmt: skip
    restore = _with_inventory(
        etcd, "restore", _etcd_restore,
        "reset the control planes and start the cluster again from a snapshot",
    )  # fmt: skip
    restore.add_argument("snapshot", metavar="SNAPSHOT", help="a file kubi etcd snapshot made")
    restore.add_argument("--yes", action="store_true", help="do it: it resets the control planes")
    certs = sub.add_parser(
        "certs", help="the cluster's certificates (kubi check shows them)"
    ).add_subparsers(dest="certs_command", required=True)
    _with_inventory(
        certs, "renew", _certs_renew, "renew kubeadm's certificates, one control plane at a time"
    )
    node = sub.add_parser("node", help="a node of the cluster").add_subparsers(
        dest="node_command", required=True
    )
    remove = _with_inventory(
        node, "remove", _node_remove,
        "drain, reset and forget a node (then take it out of the inventory)",
    )  # fmt: skip
    remove.add_argument("node", metavar="NODE", help="a host name of the inventory")
    upgrade = _with_inventory(
        sub, "upgrade", _upgrade,
        "bring the cluster to versions.kubernetes, one node at a time (shows the plan)",
    )  # fmt: skip
    upgrade.add_argument("--yes", action="store_true", help="run the plan it shows")
    kubeconfig = _with_inventory(
        sub, "kubeconfig", _kubeconfig,
        "print a developer's kubeconfig for a workstation (the ssh -L line on stderr)",
    )  # fmt: skip
    kubeconfig.add_argument("person", metavar="PERSON", help="a member of a userspace")
    kubeconfig.add_argument(
        "--port", type=int, help="the workstation's end of the tunnel (default: the API port)"
    )
    return top


def _with_inventory(subparsers, name: str, func, text: str) -> argparse.ArgumentParser:
    """A command of the cluster, run against the platform of `--inventory`."""
    command = subparsers.add_parser(name, help=text)
    command.add_argument("--inventory", required=True, help="e.g. inventories/prod.py")
    command.set_defaults(func=func)
    return command


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return 2
    except (LabError, ChartError, SshError, ClusterOpError, SnapshotError) as exc:
        # one clear message, no traceback
        print(f"kubi: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

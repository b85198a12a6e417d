"""etcd snapshots of the cluster, kept on the deployer: `kubi etcd snapshot`.

A control plane saves the snapshot with the etcdctl of the etcd image its kubelet already
runs (containerd runs it apart from Kubernetes, on the host network, with the etcd client
certificate kubeadm made there), so a snapshot needs neither the API server nor a tool
on the host. etcdutl checks the file there; the deployer fetches it over SSH, compares its
digest, and keeps it with the platform's secrets (0600: it holds every Secret of the
cluster), then the copy on the host is removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubi import images, kubeadm
from kubi.config import Platform
from kubi.secrets import for_platform
from kubi.ssh import SshError

REMOTE_DIR = "/var/lib/kubi-etcd"  # root's (0700), on the control plane
REMOTE_FILE = f"{REMOTE_DIR}/snapshot.db"
SNAPSHOTS = "etcd-snapshots"  # the folder under the platform's secrets
ETCD_PKI = f"{kubeadm.PKI_DIR}/etcd"


class SnapshotError(Exception):
    """A snapshot that could not be made or fetched; the message says where and why."""


@dataclass(frozen=True)
class Snapshot:
    path: Path
    source: str  # the control plane it was saved on
    size: int
    revision: int
    keys: int


def etcd_image(platform: Platform) -> str:
    return next(i.ref for i in images.needed(platform) if i.repository.endswith("/etcd"))


def _ctr(image: str, name: str, mounts: list[tuple[str, str]], *argv: str) -> str:
    binds = " ".join(
        f"--mount type=bind,src={src},dst={src},options=rbind:{mode}" for src, mode in mounts
    )
    return f"ctr -n k8s.io run --rm --net-host {binds} {image} {name}-$$ {' '.join(argv)}"


def save_script(platform: Platform) -> str:
    """Shell that saves a snapshot on this control plane and prints etcdutl's status (one
    JSON line) and the file's sha256."""
    image = etcd_image(platform)
    pki = [(ETCD_PKI, "ro"), (REMOTE_DIR, "rw")]
    save = _ctr(
        image, "kubi-etcd-snapshot", pki, "etcdctl", "--endpoints=https://127.0.0.1:2379",
        f"--cacert={ETCD_PKI}/ca.crt", f"--cert={ETCD_PKI}/healthcheck-client.crt",
        f"--key={ETCD_PKI}/healthcheck-client.key", "snapshot", "save", REMOTE_FILE,
    )  # fmt: skip
    status = _ctr(
        image, "kubi-etcd-status", [(REMOTE_DIR, "ro")], "etcdutl", "snapshot", "status",
        REMOTE_FILE, "-w", "json",
    )  # fmt: skip
    return (
        f"set -e; install -d -m 700 {REMOTE_DIR}; rm -f {REMOTE_FILE}; "
        f"{save} >/dev/null; {status}; sha256sum {REMOTE_FILE}"
    )


def _store(directory: Path, name: str, data: bytes) -> Path:
    """Write `data` as `directory/name`, 0600 from its first byte, atomically."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, directory / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return directory / name


def snapshot(declared, connect: Callable[[str, dict], Any], now: float | None = None) -> Snapshot:
    """A snapshot from the first control plane that can make one, kept on the deployer."""
    platform = declared.config
    problems = []
    for cp in platform.role("control_plane"):
        try:
            with connect(cp.name, declared.host_data(cp.name)) as target:
                saved = target.run(save_script(platform))
                if saved.returncode != 0:
                    raise SnapshotError(saved.stderr.decode(errors="replace").strip()[-400:])
                lines = saved.stdout.decode().strip().splitlines()
                status = json.loads(lines[-2])
                digest = lines[-1].split()[0]
                fetched = target.run(f"cat {REMOTE_FILE}; rc=$?; rm -f {REMOTE_FILE}; exit $rc")
        except Exception as exc:  # noqa: BLE001  (the next control plane may do it)
            problems.append(f"{cp.name}: {exc}")
            continue
        data = fetched.stdout
        if fetched.returncode != 0 or hashlib.sha256(data).hexdigest() != digest:
            problems.append(f"{cp.name}: the snapshot changed on its way to this machine")
            continue
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        path = _store(for_platform(platform).path(SNAPSHOTS), f"{platform.name}-{stamp}.db", data)
        return Snapshot(path, cp.name, len(data), int(status["revision"]), int(status["totalKey"]))
    raise SnapshotError("no control plane made a snapshot: " + "; ".join(problems))


# --- restore -----------------------------------------------------------------------------------

RESTORE_FILE = f"{REMOTE_DIR}/restore.db"
ETCD_DATA = "/var/lib/etcd"


def restore_script(platform: Platform, name: str) -> str:
    """Shell, on the first control plane, that starts the cluster again from RESTORE_FILE:
    whatever kubeadm made there is undone (the certificates stay), etcd's data is made from
    the snapshot as a one-member cluster of this node, and `kubeadm init` starts the control
    plane on it. The peer address is the one kubeadm gives etcd: the node's advertised one,
    read from its kubeadm configuration."""
    image = etcd_image(platform)
    peer = "https://$ip:2380"
    restore = _ctr(
        image, "kubi-etcd-restore", [("/var/lib", "rw")],  # the snapshot and etcd's data
        "etcdutl", "snapshot", "restore", RESTORE_FILE, f"--data-dir={ETCD_DATA}",
        f"--name={name}", f"--initial-cluster={name}={peer}",
        f"--initial-advertise-peer-urls={peer}",
    )  # fmt: skip
    pull = f"ctr -n k8s.io images pull --hosts-dir /etc/containerd/certs.d {image} >/dev/null"
    return (
        f"set -e; ip=$(sed -n 's/^ *advertiseAddress: *//p' {kubeadm.CONFIG} | head -1 "
        '| tr -d \'"\'"\'"); [ -n "$ip" ]; '
        f"{kubeadm.UNDO} >/dev/null 2>&1; rm -rf {ETCD_DATA}; {pull}; "
        f"{restore} >/dev/null; rm -f {RESTORE_FILE}; "
        f"{kubeadm.INIT} --ignore-preflight-errors=DirAvailable--var-lib-etcd"
    )


def restore(
    declared, snapshot_file: Path, connect: Callable[[str, dict], Any], log: Callable[[str], None]
) -> None:
    """Start the cluster again from `snapshot_file` on the first control plane; the other
    control planes are reset so that the next converge joins them to it."""
    platform = declared.config
    data = snapshot_file.read_bytes()
    control_planes = platform.role("control_plane")
    first, others = control_planes[0], control_planes[1:]
    for cp in others:  # first: they must not keep the old cluster's etcd going
        try:
            with connect(cp.name, declared.host_data(cp.name)) as target:
                done = target.run(f"{kubeadm.UNDO} >/dev/null")
        except SshError as exc:  # a dead control plane: the restore is for that too
            log(
                f"{cp.name}: unreachable, not reset ({exc}); before it runs again, reset it "
                f"(kubeadm reset) or run kubi node remove {cp.name}"
            )
            continue
        if done.returncode != 0:
            raise SnapshotError(
                f"{cp.name}: kubeadm reset failed: {done.stderr.decode(errors='replace')[-300:]}"
            )
        log(f"{cp.name}: reset; the next converge joins it to the restored cluster")
    with connect(first.name, declared.host_data(first.name)) as target:
        put = target.run(
            f"install -d -m 700 {REMOTE_DIR} && umask 077 && cat > {RESTORE_FILE}", stdin=data
        )
        if put.returncode != 0:
            raise SnapshotError(f"{first.name}: the snapshot could not be written there")
        done = target.run(restore_script(platform, first.name))
        if done.returncode != 0:
            raise SnapshotError(
                f"{first.name}: the restore failed: "
                f"{done.stderr.decode(errors='replace').strip()[-600:]}"
            )
        if others:
            # The snapshot still has their Nodes, Ready as they were: kubeadm join refuses
            # a name the cluster holds Ready, so they go, and the joins make them again.
            names = " ".join(shlex.quote(cp.name) for cp in others)
            forgot = target.run(f"{kubeadm.ADMIN_KUBECTL} delete node {names} --ignore-not-found")
            if forgot.returncode != 0:
                raise SnapshotError(
                    f"{first.name}: the restored cluster runs, but its old control plane "
                    f"Nodes could not be deleted: {forgot.stderr.decode(errors='replace')[-300:]}"
                    f"; delete them (kubectl delete node {names}) before the next converge"
                )
    log(
        f"{first.name}: the cluster runs again from {snapshot_file.name}; run deploys/all.py "
        "so that the other control planes join it"
    )

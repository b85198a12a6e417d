"""Day-2 operations on a platform's cluster, run by the `kubi` command over SSH, one control
plane at a time so that the API stays up through them.

- `kubi certs renew`: kubeadm renews every certificate it made on a control plane (the
  CAs, the deployer's, stay), then the control plane's static pods restart to read them,
  and the next control plane goes only once this one's API server answers again.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

from kubi import kubeadm

# The processes of the static pods that read certificates at start: killed, the kubelet
# starts their containers again at once (the manifests are unchanged).
STATIC_PODS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")
READY_WAIT = 180  # seconds for a control plane's API server to answer again


class ClusterOpError(Exception):
    """An operation stopped on a host; the message says which, why, and what is left."""


def wait_ready(seconds: int = READY_WAIT) -> str:
    """Shell that waits for this control plane's own API server to answer /readyz."""
    said = shlex.quote(f"the API server here did not answer /readyz within {seconds} s")
    return (
        f"i=0; until curl -sf --max-time 3 --cacert {kubeadm.PKI_DIR}/ca.crt "
        f"https://127.0.0.1:6443/readyz >/dev/null; do i=$((i+3)); "
        f"[ $i -lt {seconds} ] || {{ echo {said} >&2; exit 1; }}; sleep 3; done"
    )


RENEW = (
    f"{wait_ready()} && kubeadm certs renew all >/dev/null && "
    + " && ".join(f"{{ pkill -x {name} || true; }}" for name in STATIC_PODS)
    # the old process may still answer for a moment: wait for it to go, then for the new
    + f" && sleep 5 && {wait_ready()}"
)


def renew_certificates(declared, connect: Callable[[str, dict], Any], log: Callable[[str], None]):
    """`kubeadm certs renew all` on each control plane in turn."""
    platform = declared.config
    for cp in platform.role("control_plane"):
        with connect(cp.name, declared.host_data(cp.name)) as target:
            done = target.run(RENEW)
        if done.returncode != 0:
            rest = [h.name for h in platform.role("control_plane")]
            left = rest[rest.index(cp.name) + 1 :]
            raise ClusterOpError(
                f"{cp.name}: {done.stderr.decode(errors='replace').strip()[-400:]}; "
                + (f"not renewed yet: {', '.join(left)}; " if left else "")
                + "run kubi check, then kubi certs renew again"
            )
        log(f"{cp.name}: certificates renewed, control plane restarted and answering")

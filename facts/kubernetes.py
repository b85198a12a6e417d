"""Facts of a Kubernetes node: its package key and what kubeadm has made of it."""

from __future__ import annotations

from datetime import UTC, datetime

from pyinfra.api import FactBase

from kubi import aptsource, kubeadm

_KUBEADM_STATE = (
    f"\nif {kubeadm.JOINED}; then echo joined=yes\n"  # else: what an unfinished one left
    + r"""else
  for left in /etc/kubernetes/kubelet.conf /etc/kubernetes/bootstrap-kubelet.conf \
      /var/lib/etcd/member /etc/kubernetes/manifests/*.yaml; do
    [ -e "$left" ] && { echo "partial=$left"; break; }
  done
fi
[ -s /etc/kubernetes/manifests/kube-apiserver.yaml ] && echo control_plane=yes
command -v kubeadm >/dev/null && echo "kubeadm=$(kubeadm version -o short 2>/dev/null)"
if [ -s /etc/kubernetes/pki/apiserver.crt ]; then
  echo "apiserver_expiry=$(openssl x509 -noout -enddate -in /etc/kubernetes/pki/apiserver.crt \
    2>/dev/null | cut -d= -f2)"
  echo "apiserver_names=$(openssl x509 -noout -ext subjectAltName \
    -in /etc/kubernetes/pki/apiserver.crt 2>/dev/null | tail -n +2 | tr -d ' ')"
fi
"""
)


class KubernetesNodeState(FactBase):
    """
    The keyring of the packages' repository and kubeadm's state, in one round trip:

    .. code:: python

        {
            "keyrings": {"/etc/apt/keyrings/kubi-kubernetes.gpg": None},  # aptsource
            "joined": True,            # init or join done
            "partial": None,           # what an init or join that did not finish left
            "control_plane": True,     # a static kube-apiserver pod
            "kubeadm": "v1.33.3",      # installed kubeadm, or None
            "apiserver_expiry": 1.8e9, # epoch seconds of the API server certificate's end
            "apiserver_names": ["kube-api.example", "10.0.0.21"],  # its DNS names and IPs
        }
    """

    def command(self, keyring: str) -> str:
        return aptsource.keyrings_script((keyring,)) + _KUBEADM_STATE

    def process(self, output: list[str]) -> dict:
        state: dict = {
            "keyrings": aptsource.parse_keyrings(output),
            "joined": False,
            "partial": None,
            "control_plane": False,
            "kubeadm": None,
            "apiserver_expiry": None,
            "apiserver_names": None,
        }
        for line in output:
            key, _, value = line.partition("=")
            if key in ("joined", "control_plane"):
                state[key] = value == "yes"
            elif key == "partial" and value.startswith("/"):
                state[key] = value
            elif key == "kubeadm" and value.startswith("v"):
                state["kubeadm"] = value
            elif key == "apiserver_names" and value:
                names = [part.split(":", 1)[-1] for part in value.split(",")]
                state[key] = [name for name in names if name]
            elif key == "apiserver_expiry" and value:
                try:
                    end = datetime.strptime(value, "%b %d %H:%M:%S %Y %Z")
                except ValueError:
                    continue
                state["apiserver_expiry"] = end.replace(tzinfo=UTC).timestamp()
        return state

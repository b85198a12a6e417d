"""cilium: the pod network's agents on every node, its operator, and Ready nodes."""

from __future__ import annotations

import json

import pytest

from kubi.kubeadm import ADMIN_KUBECTL

pytestmark = pytest.mark.roles("control_plane")  # as the cluster's admin, on a control plane


def test_the_agents_run_on_every_node_and_the_operator_is_ready(node, platform):
    if platform.kubernetes.pod_network != "cilium":
        pytest.skip("kubernetes.pod_network is not cilium")
    agents = json.loads(node.check_output(f"{ADMIN_KUBECTL} -n kube-system get ds cilium -o json"))
    status = agents["status"]
    wanted = len([h for h in platform.hosts if h.is_kubernetes_node])
    assert status["desiredNumberScheduled"] == status["numberReady"] == wanted, status
    operator = json.loads(
        node.check_output(f"{ADMIN_KUBECTL} -n kube-system get deploy cilium-operator -o json")
    )
    assert operator["status"].get("readyReplicas") == operator["spec"]["replicas"]

"""ingress: both controllers run on their chosen nodes, each with its IngressClass, and
answer on their NodePorts there: the admin one from the input host (the cockpit's way), the
public one with HTTP and HTTPS."""

from __future__ import annotations

import json

import pytest

from kubi import ingress
from kubi.kubeadm import ADMIN_KUBECTL

pytestmark = pytest.mark.roles("control_plane")  # as the cluster's admin, on a control plane


def test_each_controller_runs_on_its_chosen_nodes_with_its_class(node, platform):
    classes = json.loads(node.check_output(f"{ADMIN_KUBECTL} get ingressclass -o json"))
    controllers = {c["metadata"]["name"]: c["spec"]["controller"] for c in classes["items"]}
    chosen = {
        "admin-ingress": platform.admin_ingress_nodes,
        "public-ingress": platform.public_ingress_nodes,
    }
    for controller, cls in ingress.CLASSES.items():
        assert controllers.get(cls) == "nginx.org/ingress-controller", controllers
        pods = json.loads(node.check_output(f"{ADMIN_KUBECTL} -n {controller} get pods -o json"))[
            "items"
        ]
        ready = {
            p["spec"].get("nodeName")
            for p in pods
            if any(c["type"] == "Ready" and c["status"] == "True"
                   for c in p["status"].get("conditions") or [])
        }  # fmt: skip
        assert ready == {h.name for h in chosen[controller]}, controller


@pytest.mark.roles("input")  # the cockpit's way: the firewall opens it to the input host
def test_the_admin_nodeport_answers_on_the_chosen_nodes(node, platform):
    for host in platform.admin_ingress_nodes:
        answer = node.check_output(
            f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 "
            f"http://{host.ip}:{platform.ingress.admin_http_nodeport}/"
        )
        assert answer == "404", f"admin ingress on {host.name}: HTTP {answer}"  # no Ingress yet


@pytest.mark.roles("input")
def test_the_public_nodeports_answer_on_the_chosen_nodes(node, spec, platform):
    if not any(spec.ip in net for net in platform.firewall.public_ingress_from):
        pytest.skip("the firewall opens the public ingress to firewall.public_ingress_from only")
    ports = platform.ingress
    for host in platform.public_ingress_nodes:
        answer = node.check_output(
            f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 "
            f"http://{host.ip}:{ports.public_http_nodeport}/"
        )
        assert answer == "404", f"public ingress on {host.name}: HTTP {answer}"
        # no certificate of its own by default: NGINX takes the connection, then refuses
        # the TLS handshake (curl 35), where a closed port would say 7
        code = node.run(
            f"curl -sk -o /dev/null --max-time 5 https://{host.ip}:{ports.public_https_nodeport}/"
        ).rc
        assert code in (0, 35), f"public https on {host.name}: curl exit {code}"

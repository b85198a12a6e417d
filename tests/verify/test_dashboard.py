"""dashboard: Headlamp answers through the cockpit, as people reach it
(http://dashboard.localhost:<cockpit port>/ over their SSH forward), and its
ServiceAccount may do nothing."""

from __future__ import annotations

import pytest

from kubi import dashboard
from kubi.kubeadm import ADMIN_KUBECTL


def test_it_answers_through_the_cockpit(node, platform):
    answer = node.check_output(
        "curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H 'Host: dashboard.localhost' "
        f"http://127.0.0.1:{platform.cockpit.port}/"
    )
    assert answer == "200", f"the dashboard through the cockpit: HTTP {answer}"


@pytest.mark.roles("control_plane")  # as the cluster's admin
def test_its_service_account_has_no_rights(node):
    account = f"system:serviceaccount:{dashboard.NAMESPACE}:{dashboard.NAME}"
    result = node.run(f"{ADMIN_KUBECTL} auth can-i --list --as={account} -n default")
    assert result.rc == 0
    granted = [line for line in result.stdout.splitlines()[1:] if "secrets" in line or "*" in line]
    assert granted == [], result.stdout

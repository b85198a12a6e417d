"""`kubi check`'s judgement, from what the nodes and the cluster said (kubi/check.py); the
lab tier runs it against a real cluster."""

from __future__ import annotations

from kubi import check

NOW = 1_800_000_000.0
DAY = 86400.0


def node(name, control_plane=False, days=365.0, kubelet="active", etcd='{"health":"true"}'):
    report = check.NodeReport(name, control_plane, kubelet=kubelet)
    report.certs = {"/etc/kubernetes/pki/apiserver.crt": NOW + days * DAY}
    report.etcd_health = etcd if control_plane else None
    return report


def cluster(ready=None, pods=None, members=("cp1",)):
    ready = ready or {"cp1": "True", "w1": "True"}
    items = [
        {"metadata": {"name": n}, "status": {"conditions": [{"type": "Ready", "status": s,
                                                              "message": "kubelet says so"}]}}
        for n, s in ready.items()
    ]  # fmt: skip
    pods = pods if pods is not None else {
        f"{part}-cp1": ("Running", True) for part in check.CONTROL_PLANE_PODS
    }  # fmt: skip
    pod_items = [
        {"metadata": {"name": n}, "status": {"phase": phase, "containerStatuses": [{"ready": r}]}}
        for n, (phase, r) in pods.items()
    ]
    return check.ClusterReport(
        answered_by="cp1",
        nodes={"items": items},
        pods={"items": pod_items},
        etcd_members={"members": [{"name": m} for m in members]},
    )


def levels(findings):
    return {(f.level, f.subject) for f in findings}


def test_a_healthy_cluster_is_all_ok():
    findings = check.judge([node("cp1", True), node("w1")], cluster(), ["cp1"], NOW)
    assert {f.level for f in findings} == {"OK"}
    assert check.exit_code(findings) == 0
    text = check.render(findings)
    assert text.splitlines()[-1] == f"kubi check: 0 FAIL, 0 WARN, {len(findings)} OK"
    assert "etcd  1 members, one per control plane" in text


def test_each_fault_is_named_and_fails():
    nodes = [node("cp1", True, etcd="curl: (7) Failed to connect"), node("w1", kubelet="failed")]
    state = cluster(ready={"cp1": "True", "w1": "False"}, members=("cp1", "old-cp"))
    state.pods["items"][0]["status"]["phase"] = "CrashLoopBackOff"
    findings = check.judge(nodes, state, ["cp1"], NOW)
    messages = {f.message for f in findings if f.level != "OK"}
    assert "kubelet is failed" in messages
    assert "etcd unhealthy: curl: (7) Failed to connect" in messages
    assert "not Ready (False): kubelet says so" in messages
    assert "control plane pods: etcd CrashLoopBackOff" in messages
    assert "members that are no control plane of the inventory: old-cp" in messages
    assert check.exit_code(findings) == 1


def test_an_unreachable_node_and_a_missing_one():
    down = check.NodeReport("w1", False, error="cannot connect to w1 (10.0.0.31:22)")
    findings = check.judge([node("cp1", True), down, node("w2")], cluster(), ["cp1"], NOW)
    assert ("FAIL", "w1") in levels(findings)
    assert any(
        f.message == "not a node of the cluster: run deploys/kubernetes.py" for f in findings
    )


def test_certificates_warn_then_fail_as_their_end_nears():
    for days, level in ((365, "OK"), (20, "WARN"), (3, "FAIL"), (-1, "FAIL")):
        findings = check.judge([node("w1", days=days)], cluster(ready={"w1": "True"}), [], NOW)
        (cert,) = [f for f in findings if "certificate" in f.message]
        assert cert.level == level, (days, cert)


def test_no_control_plane_answering_is_one_failure():
    state = check.ClusterReport(errors=["cp1: kubectl failed: connection refused"])
    findings = check.judge([node("cp1", True)], state, ["cp1"], NOW)
    assert findings[-1] == check.Finding(
        "FAIL", "cluster", "no control plane could read the cluster: cp1: kubectl failed: "
        "connection refused"
    )  # fmt: skip


def test_the_node_script_is_parsed():
    output = (
        "kubelet active\n"
        "cert /etc/kubernetes/pki/apiserver.crt Nov 27 08:00:00 2027 GMT\n"
        "cert /etc/kubernetes/admin.conf Nov 27 08:00:00 2027 GMT\n"
        "cert /etc/kubernetes/pki/bad.crt \n"
        'etcd_health {"health":"true","reason":""}\n'
    )
    report = check.parse_node("cp1", True, output)
    assert report.kubelet == "active"
    assert sorted(report.certs) == [
        "/etc/kubernetes/admin.conf",
        "/etc/kubernetes/pki/apiserver.crt",
    ]
    assert report.etcd_health == '{"health":"true","reason":""}'

"""The kubeadm cluster on real lab hosts: three control planes and two workers from one
converge, pods talking across nodes, the API through the input host's stream, and the loss
of a control plane (docs/kubernetes-lab.md; needs the Kubernetes binaries)."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from kubi import kubeadm, lab
from kubi.images import Image, archive_digest
from kubi.inventory import load
from kubi.lab import kubernetes as lab_kubernetes
from tests.conftest import KUBERNETES_BIN

from .conftest import BIN, ROOT, changed_ops, failed_ops, pyinfra, why_failed

pytestmark = pytest.mark.lab

HOSTS, CONTROL_PLANES = 8, 3  # input, output, repository, three control planes, two workers
KUBECTL = f"kubectl --kubeconfig {kubeadm.ADMIN_CONF}"
ETCD_IMAGE = "registry.k8s.io/etcd:3.5.21-0"  # the lab's: etcd and etcdctl, nothing else


def _platform():
    return load(ROOT / "inventories" / "lab.py").config


def _address(state, name: str) -> str:
    return next(h.address for h in state.hosts if h.name == name)


def _kubectl(state, command: str, on: str = "lab-cp2", timeout: float = 120):
    done = lab.run_on(_address(state, on), f"{KUBECTL} {command}", timeout=timeout)
    assert done.returncode == 0, f"kubectl {command}: {done.stdout}{done.stderr}"
    return done.stdout


def _until(what: str, check, seconds: float = 120):
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {seconds:.0f} s")
        time.sleep(2)


@pytest.fixture(scope="module")
def cluster(lab_state):
    """The lab grown to three control planes and two workers, then one converge."""
    if not _platform().enabled("kubernetes"):
        pytest.skip("no Kubernetes binaries: the lab leaves the cluster out (see docs/lab.md)")
    if os.environ.get("KUBI_LAB_DEPLOY_USER", "root") != "root":
        # test_converge brings the cluster up through sudo in this tier; the three control
        # planes and the day-2 commands (which SSH as the deploy account too) run once.
        pytest.skip("the HA cluster and its day-2 commands run in the root tier")
    before = pyinfra("--json", "-y", "deploys/all.py")  # the lab as the earlier tests left it
    assert before.returncode == 0, why_failed(before)
    known = {h.name for h in lab_state.hosts}
    state = lab.up(total=HOSTS, control_planes=CONTROL_PLANES, log=lambda line: None)
    grown = pyinfra("--json", "-y", "deploys/all.py")
    assert grown.returncode == 0, why_failed(grown)
    return state, grown, {h.name: h.role for h in state.hosts if h.name not in known}


def test_nodes_added_to_the_inventory_join_and_only_they(cluster):
    state, grown, added = cluster
    assert failed_ops(grown) == {}
    if not added:
        pytest.skip("the reused lab had all its hosts already: nothing joined in this run")
    changed = changed_ops(grown)
    joins = {
        name: sorted(changed.get(name, []))
        for name in ("kubeadm join --control-plane (one at a time)", "kubeadm join (worker)")
    }
    assert joins == {
        "kubeadm join --control-plane (one at a time)": sorted(
            n for n, role in added.items() if role == "control_plane"
        ),
        "kubeadm join (worker)": sorted(n for n, role in added.items() if role == "workers"),
    }
    assert "kubeadm init (first control plane)" not in changed
    assert changed["bootstrap token and control-plane certificates for the joins"] == ["lab-cp1"]
    nodes = _kubectl(state, "get nodes -o json")
    ready = {
        n["metadata"]["name"]: {c["type"]: c["status"] for c in n["status"]["conditions"]}["Ready"]
        for n in json.loads(nodes)["items"]
    }
    assert ready == dict.fromkeys(
        ["lab-cp1", "lab-cp2", "lab-cp3", "lab-worker1", "lab-worker2"], "True"
    )


def test_a_second_run_changes_nothing(cluster):
    again = pyinfra("--json", "-y", "deploys/all.py")
    assert again.returncode == 0, why_failed(again)
    assert changed_ops(again) == {}


POD = """{{"apiVersion": "v1", "kind": "Pod",
 "metadata": {{"name": "{name}", "namespace": "default", "labels": {{"app": "{name}"}}}},
 "spec": {{"nodeName": "{node}", "terminationGracePeriodSeconds": 0,
  "containers": [{{"name": "etcd", "image": "{image}",
   "command": ["etcd", "--data-dir=/tmp/etcd", "--listen-peer-urls=http://127.0.0.1:2380",
     "--listen-client-urls=http://0.0.0.0:2379",
     "--advertise-client-urls=http://127.0.0.1:2379"],
   "resources": {{"requests": {{"cpu": "10m", "memory": "32Mi"}},
                 "limits": {{"cpu": "200m", "memory": "128Mi"}}}}}}]}}}}"""
SERVICE = """{"apiVersion": "v1", "kind": "Service",
 "metadata": {"name": "probe-server", "namespace": "default"},
 "spec": {"selector": {"app": "probe-server"}, "ports": [{"port": 2379}]}}"""


def test_pods_on_two_workers_talk_by_ip_and_through_a_service(cluster):
    """An etcd server in a pod on one worker, reached from a pod on the other (its etcdctl),
    by the pod's IP across the bridge network's routes, then by the service's ClusterIP
    (kube-proxy's rules). The client's image is named as charts pin theirs (Cilium's),
    `<name>:<tag>@sha256:<digest>`: the node pulls it by that digest through the platform
    registry."""
    state, _, _ = cluster
    archive = lab_kubernetes.images_dir() / Image(ETCD_IMAGE).archive_name
    pinned = f"{ETCD_IMAGE}@{archive_digest(archive)}"
    manifests = [
        POD.format(name="probe-server", node="lab-worker1", image=ETCD_IMAGE),
        POD.format(name="probe-client", node="lab-worker2", image=pinned),
        SERVICE,
    ]
    cp = _address(state, "lab-cp2")
    try:
        for manifest in manifests:
            done = lab.run_on(cp, f"echo '{manifest}' | {KUBECTL} apply -f -")
            assert done.returncode == 0, done.stderr
        _kubectl(
            state, "wait --for=condition=Ready pod/probe-server pod/probe-client --timeout=120s"
        )
        server_ip = _kubectl(state, "get pod probe-server -o jsonpath={.status.podIP}")
        service_ip = _kubectl(state, "get service probe-server -o jsonpath={.spec.clusterIP}")
        for target in (server_ip, service_ip):
            health = _kubectl(
                state,
                "exec probe-client -- etcdctl --dial-timeout=5s "
                f"--endpoints=http://{target}:2379 put kubi-probe {target}",
            )
            assert health.strip() == "OK", target
    finally:
        _kubectl(state, "delete pod/probe-server pod/probe-client service/probe-server "
                 "--ignore-not-found --wait=false")  # fmt: skip


def _through_the_input_stream(state) -> str:
    """/readyz of the API as the input host's 127.0.0.1 stream serves it (the cockpit's);
    the input host holds no cluster CA: the certificate is checked by the verify suites."""
    port = _platform().cockpit.api_port
    done = lab.run_on(
        _address(state, "lab-input"),
        f"curl -sSk --max-time 5 https://127.0.0.1:{port}/readyz",
        timeout=30,
    )
    return done.stdout.strip()


def test_the_api_answers_through_the_input_host_stream(cluster):
    state, _, _ = cluster
    assert _through_the_input_stream(state) == "ok"


def test_losing_a_control_plane_keeps_the_api_and_kubectl_working(cluster):
    """A power cut of the first control plane (the one that ran kubeadm init): the API still
    answers through every node's api_proxy and the input host's stream, a new pod is
    scheduled and runs; booted again, it rejoins by itself."""
    state, _, _ = cluster
    lab.stop(["lab-cp1"], kill=True, log=lambda line: None)
    try:
        _until("the API through the input host", lambda: _through_the_input_stream(state) == "ok")
        worker = _address(state, "lab-worker1")
        # As the worker's kubelet, through its api_proxy (it may read its own Node only).
        own = lab.run_on(
            worker, "kubectl --kubeconfig /etc/kubernetes/kubelet.conf get node lab-worker1 -o name"
        )
        assert own.returncode == 0 and own.stdout.strip() == "node/lab-worker1", own.stderr
        manifest = POD.format(name="probe-after-loss", node="lab-worker2", image=ETCD_IMAGE)
        applied = lab.run_on(
            _address(state, "lab-cp3"), f"echo '{manifest}' | {KUBECTL} apply -f -"
        )
        assert applied.returncode == 0, applied.stderr
        _kubectl(
            state, "wait --for=condition=Ready pod/probe-after-loss --timeout=120s", on="lab-cp3"
        )
        _kubectl(state, "delete pod probe-after-loss --wait=false", on="lab-cp3")
    finally:
        lab.start(["lab-cp1"], log=lambda line: None)
    _until(
        "lab-cp1 Ready again",
        lambda: (
            "True"
            in lab.run_on(
                _address(state, "lab-cp2"),
                f"{KUBECTL} get node lab-cp1 "
                "-o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}'",
            ).stdout
        ),
        seconds=180,
    )


def test_kubi_reaches_the_api_through_the_input_hosts_tunnel(cluster):
    """The apply layer over kubi's own way in (kubi/kubeapi.py): an SSH tunnel to the input
    host's API stream, an admin certificate the deployer signs. Applied twice, the second
    changes nothing; pruned, it is gone; the audit names kubi."""
    from kubi import apply, kubeapi

    state, _, _ = cluster
    declared = load(ROOT / "inventories" / "lab.py")
    config_map = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kubi-tunnel-probe", "namespace": "default"},
        "data": {"proof": "yes"},
    }  # fmt: skip
    owner = {"component": "tunnel-probe", "platform": declared.config.name}
    with kubeapi.connected(declared) as api:
        first = apply.apply(api, [config_map], **owner)
        again = apply.apply(api, [config_map], **owner)
        whoami = api.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                             body={"apiVersion": "authentication.k8s.io/v1",
                                   "kind": "SelfSubjectReview"})  # fmt: skip
        pruned = apply.prune(api, [], kinds=[("v1", "ConfigMap")], **owner)
    assert first.actions == {"ConfigMap default/kubi-tunnel-probe": "created"}
    assert again.actions == {"ConfigMap default/kubi-tunnel-probe": "unchanged"}
    assert whoami.status.userInfo.username == "kubi"
    assert "kubeadm:cluster-admins" in whoami.status.userInfo.groups
    assert pruned == ["ConfigMap default/kubi-tunnel-probe"]
    assert "kubi-tunnel-probe" not in _kubectl(state, "get configmaps -o name")


def test_a_developers_kubectl_through_the_forward_acts_in_their_userspace_only(cluster, tmp_path):
    """The source's "deploy from a client workstation": `kubi kubeconfig` prints the
    developer's kubeconfig and the ssh line; through that `ssh -L` as the developer, their
    kubectl works in their namespace and is refused elsewhere."""
    state, _, _ = cluster
    config = tmp_path / "config"
    made = subprocess.run(
        [str(BIN / "kubi"), "kubeconfig", "lab-dev", "--inventory", "inventories/lab.py",
         "--port", "18443"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    config.write_text(made.stdout)
    config.chmod(0o600)
    line = made.stderr.strip().splitlines()[-1].split("first: ", 1)[1]
    address = _address(state, "lab-input")
    assert line == f"ssh -N -L 18443:127.0.0.1:{_platform().cockpit.api_port} lab-dev@{address}"
    lab.check_route(address)  # the safety rule, before any connection
    forward = subprocess.Popen(
        ["ssh", "-i", str(lab.person_key("lab-dev")), "-o", "IdentitiesOnly=yes",
         "-o", f"UserKnownHostsFile={lab.known_hosts_file()}", "-o", "BatchMode=yes",
         "-o", "ExitOnForwardFailure=yes", *line.split()[1:]],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    kubectl = [str(KUBERNETES_BIN / "kubectl"), "--kubeconfig", str(config)]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*kubectl, *args], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)  # fmt: skip

    try:
        _until("the forward answers", lambda: run("auth", "can-i", "list", "pods").returncode == 0,
               seconds=30)  # fmt: skip
        assert run("auth", "can-i", "create", "deployments").stdout.strip() == "yes"
        made_map = run("create", "configmap", "probe", "--from-literal=a=1")
        assert made_map.returncode == 0, made_map.stderr
        assert "probe" in run("get", "configmaps", "-o", "name").stdout
        for elsewhere in (["-n", "kube-system", "get", "pods"], ["get", "nodes"],
                          ["-n", "default", "get", "configmaps"]):  # fmt: skip
            refused = run(*elsewhere)
            assert refused.returncode != 0 and "Forbidden" in refused.stderr, elsewhere
    finally:
        run("delete", "configmap", "probe", "--ignore-not-found")
        forward.terminate()
        forward.wait(timeout=10)


def test_the_lab_api_accepts_ciliums_objects_in_a_dry_run(cluster):
    """The production pod network where its images cannot run: Cilium's objects as kubi
    renders them from the pinned chart pass the lab's real API server (a server-side dry
    run through kubi's tunnel), and nothing of them is stored."""
    from kubi import apply, cilium, kubeapi

    charts = Path(os.environ.get("KUBI_LAB_CHARTS", "/var/cache/kubi-charts"))
    if not (charts / cilium.archive_name()).is_file():
        pytest.skip(f"no {charts / cilium.archive_name()} (KUBI_LAB_CHARTS): see docs/lab.md")
    state, _, _ = cluster
    declared = load(ROOT / "inventories" / "lab.py")
    objects = cilium.render(declared.config, charts)
    with kubeapi.connected(declared) as api:
        result = apply.apply(
            api, objects, component="cilium", platform=declared.config.name, dry_run=True
        )
    assert len(result.objects) == len(objects) > 20
    assert {a.action for a in result.objects} == {"created"}
    assert "cilium" not in _kubectl(state, "-n kube-system get daemonsets -o name")


def test_the_add_ons_apply_and_an_image_the_lab_lacks_is_named_in_one_line(cluster):
    """The ingresses' and the dashboard's objects, applied for real through kubi's tunnel.
    Their images cannot be had here; named as the platform registry serves upstream images
    (<registry>/<upstream name>), the nodes ask the platform registry for them, which does
    not have them: the wait says so in one line per workload, within seconds."""
    from kubi import apply, dashboard, ingress, kubeapi, registry

    charts = Path(os.environ.get("KUBI_LAB_CHARTS", "/var/cache/kubi-charts"))
    archive = charts / f"{ingress.CHART}-2.6.4.tgz"
    if not archive.is_file():
        pytest.skip(f"no {archive} (KUBI_LAB_CHARTS): see docs/lab.md")
    state, _, _ = cluster
    declared = load(ROOT / "inventories" / "lab.py")
    cfg = declared.config
    through = registry.endpoint(cfg)
    parts = {"ingress": ingress.render(cfg, charts), "dashboard": dashboard.objects(cfg)}
    for objects in parts.values():
        for obj in objects:
            for container in (
                (obj.get("spec") or {}).get("template", {}).get("spec", {}).get("containers", [])
            ):
                container["image"] = f"{through}/{container['image']}"
    workloads = [o for objects in parts.values() for o in objects if o["kind"] in
                 ("DaemonSet", "Deployment")]  # fmt: skip
    try:
        with kubeapi.connected(declared) as api:
            for component, objects in parts.items():
                applied = apply.apply(api, objects, component=component, platform=cfg.name)
                assert {a.action for a in applied.objects} == {"created"}, component
            for obj in workloads:  # each said in one line, long before the timeout
                started = time.monotonic()
                with pytest.raises(apply.NotReady) as missing:
                    apply.wait_ready(api, [obj], timeout=240)
                assert time.monotonic() - started < 120
                image = obj["spec"]["template"]["spec"]["containers"][0]["image"]
                (line,) = str(missing.value).splitlines()
                assert line.startswith(f"{apply.describe(obj)}: cannot pull {image}: the "), line
        assert len(workloads) == 3
        classes = _kubectl(state, "get ingressclass -o name")
        assert "ingressclass.networking.k8s.io/admin" in classes
        assert "ingressclass.networking.k8s.io/public" in classes
    finally:
        with kubeapi.connected(declared) as api:
            apply.prune(api, [], component="ingress", platform=cfg.name,
                        kinds=apply.kinds(parts["ingress"]))  # fmt: skip
            apply.prune(api, [], component="dashboard", platform=cfg.name, kinds=dashboard.KINDS)


def _kubi_check() -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "kubi"), "check", "--inventory", "inventories/lab.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_kubi_check_passes_then_names_a_stopped_worker(cluster):
    state, _, _ = cluster
    healthy = _until("kubi check all OK", lambda: (r := _kubi_check()).returncode == 0 and r)
    summary = healthy.stdout.splitlines()[-1]
    assert summary.startswith("kubi check: 0 FAIL, 0 WARN, "), healthy.stdout
    assert "3 members, one per control plane" in healthy.stdout
    lab.stop(["lab-worker2"], log=lambda line: None)
    try:
        failed = _kubi_check()
        assert failed.returncode == 1, failed.stdout + failed.stderr
        (line,) = [line for line in failed.stdout.splitlines() if line.startswith("FAIL")]
        assert "lab-worker2" in line and "unreachable: cannot connect to lab-worker2" in line
    finally:
        lab.start(["lab-worker2"], log=lambda line: None)


def test_an_etcd_snapshot_reaches_the_deployer(cluster):
    """A ConfigMap made just before is in the snapshot kept with the platform's secrets."""
    state, _, _ = cluster
    marker = f"kubi-snapshot-{int(time.time())}"
    _kubectl(state, f"create configmap {marker} --from-literal=proof=yes")
    try:
        done = subprocess.run(
            [str(BIN / "kubi"), "etcd", "snapshot", "--inventory", "inventories/lab.py"],
            cwd=ROOT, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        path = Path(done.stdout.split(":", 1)[0])
        assert path.parent.name == "etcd-snapshots" and oct(path.stat().st_mode & 0o777) == "0o600"
        assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
        assert f"/registry/configmaps/default/{marker}".encode() in path.read_bytes()
        assert " revision " in done.stdout and " keys, " in done.stdout
        for cp in ("lab-cp1", "lab-cp2", "lab-cp3"):  # nothing left on a control plane
            left = lab.run_on(_address(state, cp), "ls /var/lib/kubi-etcd 2>/dev/null")
            assert left.stdout.strip() == "", cp
    finally:
        _kubectl(state, f"delete configmap {marker}")


def _apiserver_end(state, cp: str) -> str:
    done = lab.run_on(
        _address(state, cp), f"openssl x509 -noout -enddate -in {kubeadm.PKI_DIR}/apiserver.crt"
    )
    return done.stdout.strip()


def test_certificates_are_renewed_one_control_plane_at_a_time(cluster):
    state, _, _ = cluster
    before = {cp: _apiserver_end(state, cp) for cp in ("lab-cp1", "lab-cp2", "lab-cp3")}
    time.sleep(1)  # the end dates have a one-second grain
    done = subprocess.run(
        [str(BIN / "kubi"), "certs", "renew", "--inventory", "inventories/lab.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        f"{cp}: certificates renewed, control plane restarted and answering"
        for cp in ("lab-cp1", "lab-cp2", "lab-cp3")
    ]
    for cp, end in before.items():
        assert _apiserver_end(state, cp) != end, cp
    # The kubelets report the restarted pods Ready again; a controller manager that lost its
    # lease while API servers restarted exits, and comes back after the kubelet's back-off.
    _until("kubi check all OK", lambda: _kubi_check().returncode == 0, seconds=240)


def _kubi_upgrade(*args: str, inventory: str = "inventories/lab.py"):
    return subprocess.run(
        [str(BIN / "kubi"), "upgrade", "--inventory", inventory, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=1500, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_an_upgrade_the_lab_cannot_reach_stops_before_any_change(cluster, tmp_path):
    """At its own version the cluster has nothing to upgrade. Asked for the next minor, whose
    channel the lab's mirror does not serve, the upgrade shows its plan, then stops at the
    first control plane's repository check: its sources and kubeadm are as they were."""
    state, _, _ = cluster
    same = _kubi_upgrade("--yes")
    assert same.returncode == 0, same.stdout + same.stderr
    version = _platform().versions.kubernetes
    assert same.stdout.strip() == f"every node of the cluster runs v{version}: nothing to upgrade"
    inventory = tmp_path / "lab_next_minor.py"
    inventory.write_text(textwrap.dedent("""\
        from kubi import lab
        from kubi.inventory import declare

        description = lab.platform_description(lab.load_state())
        description["versions"]["kubernetes"] = "1.34.10"
        description.pop("images")  # the lab has no archives of 1.34's images
        globals().update(declare(__file__, **description).pyinfra_groups())
    """))  # fmt: skip
    listed = "/etc/apt/sources.list.d/kubi-kubernetes.list"
    cp1 = _address(state, "lab-cp1")
    before = lab.run_on(cp1, f"cat {listed}; kubeadm version -o short").stdout
    plan = _kubi_upgrade(inventory=str(inventory))
    assert plan.returncode == 0 and "add --yes" in plan.stderr, plan.stdout + plan.stderr
    assert plan.stdout.splitlines()[:3] == [
        "kubi upgrade to v1.34.10, in this order:",
        f"  {'lab-cp1':<20} kubeadm 1.34.10",
        f"  {'lab-cp1':<20} kubeadm upgrade apply v1.34.10",
    ]
    stopped = _kubi_upgrade("--yes", inventory=str(inventory))
    assert stopped.returncode == 1
    said = stopped.stderr.splitlines()[-1]  # after the inventory's notices
    assert said.startswith("kubi: lab-cp1: kubeadm 1.34.10 failed: lab-cp1: kubi: repository ")
    assert "v1.34" in said and said.endswith("kubi upgrade --yes goes on from here")
    assert lab.run_on(cp1, f"cat {listed}; kubeadm version -o short").stdout == before
    assert lab.run_on(cp1, f"ls {listed}.kubi-new").returncode != 0


def test_the_upgrade_procedure_runs_node_by_node_on_the_real_cluster(cluster):
    """The lab has one version's binaries, so the procedure runs at that version over the
    nodes seen as one patch behind: on each node in turn, control planes first, kubeadm
    from the channel, kubeadm upgrade apply (cp1) or node, drain, the kubelet from the
    channel and restarted, Ready, uncordoned, all for real. The cluster stays whole, and
    the next converge finds the files the upgrade wrote as its own."""
    from kubi import upgrade
    from kubi.ssh import SshHost

    state, _, _ = cluster
    declared = load(ROOT / "inventories" / "lab.py")
    version = declared.config.versions.kubernetes
    major, minor, patch = upgrade.parse_version(version)
    if patch == 0:
        pytest.skip(f"v{version} has no earlier patch to pretend the cluster runs")
    earlier = f"{major}.{minor}.{patch - 1}"
    observed, cluster_seen = upgrade.gather(declared, SshHost)
    assert cluster_seen.version == version and not cluster_seen.drained
    behind = {
        name: upgrade.NodeVersions(earlier, earlier, seen.joined) for name, seen in observed.items()
    }
    steps = upgrade.plan(declared.config, behind, upgrade.Cluster(earlier))
    nodes = ["lab-cp1", "lab-cp2", "lab-cp3", "lab-worker1", "lab-worker2"]
    assert [s.node for s in steps][::5] == nodes
    said: list[str] = []
    upgrade.execute(declared, steps, SshHost, said.append)
    assert said == [f"{s.node}: {s.what}" for s in steps]
    observed, cluster_seen = upgrade.gather(declared, SshHost)
    assert upgrade.plan(declared.config, observed, cluster_seen) == []
    unschedulable = _kubectl(state, "get nodes -o jsonpath={.items[*].spec.unschedulable}")
    assert unschedulable.strip() == ""
    again = pyinfra("--json", "-y", "deploys/all.py")
    assert again.returncode == 0, why_failed(again)
    assert changed_ops(again) == {}
    _until("kubi check all OK after the upgrade", lambda: _kubi_check().returncode == 0, 240)


def test_a_removed_worker_leaves_the_cluster_and_the_next_run_joins_it_again(cluster):
    """`kubi node remove` while the worker is still in the inventory: it is drained, reset
    and forgotten; kubi check says it is no node of the cluster; the next converge (the
    inventory unchanged) joins it again, and only it."""
    state, _, _ = cluster
    done = subprocess.run(
        [str(BIN / "kubi"), "node", "remove", "lab-worker2", "--inventory", "inventories/lab.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[:2] == [
        "lab-worker2: drained",
        "lab-worker2: kubeadm reset, the cluster's files removed",
    ]
    names = _kubectl(state, "get nodes -o name").split()
    assert "node/lab-worker2" not in names
    left = lab.run_on(_address(state, "lab-worker2"), "ls /etc/kubernetes/kubi /etc/kubernetes/pki")
    assert left.returncode != 0  # no configuration, no certificate left there
    check = _kubi_check()
    assert check.returncode == 1
    assert "not a node of the cluster: run deploys/kubernetes.py" in check.stdout
    again = pyinfra("--json", "-y", "deploys/all.py")
    assert again.returncode == 0, why_failed(again)
    assert changed_ops(again)["kubeadm join (worker)"] == ["lab-worker2"]
    _until("kubi check all OK again", lambda: _kubi_check().returncode == 0, seconds=180)


def test_the_cluster_starts_again_from_an_etcd_snapshot(cluster):
    """A snapshot, one object more, then the restore: the cluster runs again on the first
    control plane as the snapshot had it (the later object is gone), and the next converge
    joins the other control planes to it."""
    state, _, _ = cluster
    _kubectl(state, "create configmap kubi-restore-before --from-literal=t=1")
    saved = subprocess.run(
        [str(BIN / "kubi"), "etcd", "snapshot", "--inventory", "inventories/lab.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert saved.returncode == 0, saved.stdout + saved.stderr
    snapshot = saved.stdout.split(":", 1)[0]
    _kubectl(state, "create configmap kubi-restore-after --from-literal=t=2")
    refused = subprocess.run(
        [str(BIN / "kubi"), "etcd", "restore", snapshot, "--inventory", "inventories/lab.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert refused.returncode == 2 and "add --yes to do it" in refused.stderr
    restored = subprocess.run(
        [str(BIN / "kubi"), "etcd", "restore", snapshot, "--yes", "--inventory",
         "inventories/lab.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert restored.returncode == 0, restored.stdout + restored.stderr
    names = _kubectl(state, "get configmaps -o name", on="lab-cp1").split()
    assert "configmap/kubi-restore-before" in names
    assert "configmap/kubi-restore-after" not in names
    again = pyinfra("--json", "-y", "deploys/all.py")
    assert again.returncode == 0, why_failed(again)
    joined = changed_ops(again)["kubeadm join --control-plane (one at a time)"]
    assert sorted(joined) == ["lab-cp2", "lab-cp3"]
    _until("kubi check all OK after the restore", lambda: _kubi_check().returncode == 0, 300)
    _kubectl(state, "delete configmap kubi-restore-before", on="lab-cp1")

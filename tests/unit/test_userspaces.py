"""Userspaces (kubi/userspaces.py): the config, the objects, the kubeconfig, and, against a
real kube-apiserver with the controllers that fill tokens and empty deleted namespaces
(tests/apiserver.py), what a member's token may do and that removal revokes it."""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubi import apply, userspaces
from kubi.config.errors import ConfigError
from kubi.inventory import declare
from tests.plans.conftest import DESCRIPTION

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIqI4910CfGV/VLbLTy6XXLKZwm/HZQSG/N0iAG0D29c a@laptop"
PEOPLE = [
    {"name": "alice", "role": "dev", "keys": [KEY]},
    {"name": "bob", "role": "dev", "keys": [KEY]},
    {"name": "olga", "role": "ops", "keys": [KEY]},
]
SPACES = [
    {"name": "team-a", "members": ["alice", "bob"]},
    {"name": "bob", "members": ["bob"], "quota": {"pods": 5}},
]


def platform(spaces=SPACES, **changes):
    description = copy.deepcopy(DESCRIPTION)
    description["secrets_dir"] = "/nonexistent/kubi-test-secrets"
    description["users"] = PEOPLE
    description["userspaces"] = {"spaces": spaces}
    description.update(changes)
    return declare(None, **description).config


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


# --- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spaces", "message"),
    [
        ([{"name": "team-a", "members": ["zoe"]}],
         "field 'userspaces.spaces.0.members': zoe is not one of `users`"),
        ([{"name": "kube-system", "members": ["alice"]}], "a namespace of the cluster or of kubi"),
        ([{"name": "kubi-x", "members": ["alice"]}], "a namespace of the cluster or of kubi"),
        ([{"name": "Team", "members": ["alice"]}], "must be a namespace name"),
        ([{"name": "team-a", "members": []}], "at least 1 item"),
        ([{"name": "team-a", "members": ["alice", "alice"]}], "names alice more than once"),
        ([{"name": "a", "members": ["alice"]}, {"name": "a", "members": ["bob"]}],
         "userspace a is declared more than once"),
        ([{"name": "a", "members": ["alice"], "quota": {"requests_cpu": "4 cores"}}],
         "must be a Kubernetes quantity"),
        ([{"name": "a", "members": ["alice"], "limits": {"max_memory": "1Gi; rm -rf /"}}],
         "must be a Kubernetes quantity"),
    ],
)  # fmt: skip
def test_bad_userspaces_are_refused_naming_the_field(spaces, message):
    with pytest.raises(ConfigError) as refused:
        platform(spaces)
    assert message in str(refused.value)


def test_a_member_whose_name_cannot_name_a_service_account_is_refused():
    people = [*PEOPLE, {"name": "dev_x", "role": "dev", "keys": [KEY]}]
    with pytest.raises(ConfigError, match="cannot name a ServiceAccount"):
        platform([{"name": "a", "members": ["dev_x"]}], users=people)


# --- objects and kubeconfig -------------------------------------------------------------------


def test_each_userspace_gets_its_namespace_accounts_rights_quota_and_limits():
    objects = userspaces.objects(platform())
    assert [o["metadata"]["name"] for o in by_kind(objects, "Namespace")] == ["team-a", "bob"]
    namespace = by_kind(objects, "Namespace")[0]["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "baseline"
    accounts = [(o["metadata"]["namespace"], o["metadata"]["name"])
                for o in by_kind(objects, "ServiceAccount")]  # fmt: skip
    assert accounts == [("team-a", "alice"), ("team-a", "bob"), ("bob", "bob")]
    secret = by_kind(objects, "Secret")[0]
    assert secret["type"] == "kubernetes.io/service-account-token"
    assert secret["metadata"]["annotations"] == {"kubernetes.io/service-account.name": "alice"}
    binding = by_kind(objects, "RoleBinding")[0]
    assert binding["roleRef"]["kind"] == "Role"  # never a ClusterRole: this namespace only
    assert [s["name"] for s in binding["subjects"]] == ["alice", "bob"]
    role = by_kind(objects, "Role")[0]
    granted = {(group, resource) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"]}  # fmt: skip
    assert not {g for g, _ in granted} & {"rbac.authorization.k8s.io"}  # no one widens rights
    assert ("", "resourcequotas") in granted
    quotas = by_kind(objects, "ResourceQuota")
    assert quotas[0]["spec"]["hard"]["services.nodeports"] == "0"
    assert quotas[1]["spec"]["hard"]["pods"] == "5"
    assert by_kind(objects, "LimitRange")[0]["spec"]["limits"][0]["default"] == {
        "cpu": "500m", "memory": "512Mi"
    }  # fmt: skip
    assert userspaces.objects(platform([])) == []


def test_the_kubeconfig_has_a_context_per_userspace_and_is_the_same_twice():
    tokens = {("team-a", "bob"): "t1", ("bob", "bob"): "t2", ("team-a", "alice"): "t3"}
    text = userspaces.kubeconfig(platform(), "bob", tokens, "CA PEM\n", 7443)
    assert text == userspaces.kubeconfig(platform(), "bob", tokens, "CA PEM\n", 7443)
    assert text.splitlines()[0] == userspaces.MARKER
    config = yaml.safe_load(text)
    assert config["current-context"] == "team-a"
    assert [c["name"] for c in config["contexts"]] == ["team-a", "bob"]
    assert config["contexts"][1]["context"] == {"cluster": "plan", "namespace": "bob",
                                                "user": "bob@bob"}  # fmt: skip
    assert config["users"] == [{"name": "bob@team-a", "user": {"token": "t1"}},
                               {"name": "bob@bob", "user": {"token": "t2"}}]  # fmt: skip
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:7443"
    assert "t3" not in text  # alice's token never reaches bob


# --- against the real API server --------------------------------------------------------------


def tokens_when_filled(api, cfg, seconds=30.0):
    deadline = time.monotonic() + seconds
    while True:
        tokens = userspaces.read_tokens(api, cfg)
        if all(tokens.values()):
            return tokens
        assert time.monotonic() < deadline, f"tokens not filled: {tokens}"
        time.sleep(0.2)


def as_member(apiserver, token):
    return client.CoreV1Api(apiserver.api_client(token))


def converge(api, cfg):
    objects = userspaces.objects(cfg)
    apply.apply(api, objects, component=userspaces.COMPONENT, platform=cfg.name)
    apply.prune(api, objects, component=userspaces.COMPONENT, platform=cfg.name,
                kinds=userspaces.KINDS)  # fmt: skip


def config_map(name):
    return {"metadata": {"name": name}, "data": {"a": "1"}}


def test_a_member_acts_in_their_userspaces_only_and_removal_revokes(apiserver, direct):
    cfg = platform()
    converge(direct, cfg)
    tokens = tokens_when_filled(direct, cfg)
    bob = as_member(apiserver, tokens[("bob", "bob")])
    bob.create_namespaced_config_map("bob", config_map("mine"))
    alice = as_member(apiserver, tokens[("team-a", "alice")])
    alice.create_namespaced_config_map("team-a", config_map("ours"))
    for namespace in ("bob", "kube-system", "default"):
        with pytest.raises(ApiException) as denied:
            alice.list_namespaced_config_map(namespace)
        assert denied.value.status == 403, namespace
    with pytest.raises(ApiException) as denied:
        alice.list_namespace()
    assert denied.value.status == 403
    rbac = client.RbacAuthorizationV1Api(apiserver.api_client(tokens[("team-a", "alice")]))
    with pytest.raises(ApiException) as denied:  # no one widens their own rights
        rbac.create_namespaced_role_binding(
            "team-a",
            {"metadata": {"name": "more"}, "subjects": [{"kind": "Group", "name": "x"}],
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                         "name": "cluster-admin"}},
        )  # fmt: skip
    assert denied.value.status == 403

    # bob's own userspace goes: his token there stops working, the other one does not
    converge(direct, platform([SPACES[0]]))
    deadline = time.monotonic() + 60
    while True:
        try:
            bob.list_namespaced_config_map("bob")
        except ApiException as gone:
            if gone.status == 401:
                break
        assert time.monotonic() < deadline, "bob's token still works after removal"
        time.sleep(0.5)
    team = as_member(apiserver, tokens[("team-a", "bob")])
    assert "ours" in [c.metadata.name for c in team.list_namespaced_config_map("team-a").items]
    converge(direct, platform([]))  # and the rest: nothing of the component is left


def test_pod_security_and_quota_refuse_a_way_onto_the_nodes(apiserver, direct):
    cfg = platform([{"name": "team-p", "members": ["alice"]}])
    converge(direct, cfg)
    alice = as_member(apiserver, tokens_when_filled(direct, cfg)[("team-p", "alice")])
    privileged = {
        "metadata": {"name": "root"},
        "spec": {
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                            "securityContext": {"privileged": True},
                            "volumeMounts": [{"name": "host", "mountPath": "/host"}]}],
            "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
        },
    }  # fmt: skip
    with pytest.raises(ApiException) as refused:
        alice.create_namespaced_pod("team-p", privileged)
    assert refused.value.status == 403 and "violates PodSecurity" in refused.value.body
    node_port = {"metadata": {"name": "open"},
                 "spec": {"type": "NodePort", "ports": [{"port": 80}]}}  # fmt: skip
    with pytest.raises(ApiException) as refused:
        alice.create_namespaced_service("team-p", node_port)
    assert refused.value.status == 403 and "exceeded quota" in refused.value.body
    pause = {"name": "c", "image": "registry.k8s.io/pause:3.10"}
    plain = {"metadata": {"name": "plain"}, "spec": {"containers": [pause]}}
    made = alice.create_namespaced_pod("team-p", plain)
    # the limit range gave it what the quota requires
    assert made.spec.containers[0].resources.limits == {"cpu": "500m", "memory": "512Mi"}
    converge(direct, platform([]))


# --- kubi kubeconfig ---------------------------------------------------------------------------


def test_a_workstation_kubeconfig_and_the_ssh_line_that_carries_it():
    cfg = platform()
    tokens = {("team-a", "alice"): "t1"}
    config, line = userspaces.for_workstation(cfg, "alice", tokens, "CA\n", 16443)
    assert line == f"ssh -N -L 16443:127.0.0.1:{cfg.cockpit.api_port} alice@in1"
    assert yaml.safe_load(config)["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:16443"
    _, default = userspaces.for_workstation(cfg, "alice", tokens, "CA\n")
    port = cfg.cockpit.api_port
    assert default == f"ssh -N -L {port}:127.0.0.1:{port} alice@in1"
    with pytest.raises(userspaces.UserspaceError, match="olga is in no userspace"):
        userspaces.for_workstation(cfg, "olga", tokens, "CA\n")
    with pytest.raises(userspaces.UserspaceError, match="bob has no token yet in team-a, bob"):
        userspaces.for_workstation(cfg, "bob", tokens, "CA\n")


# --- the HomeFiles fact, run for real ------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="runuser needs root")
def test_home_files_fact_reads_as_each_person():
    from kubi.facts import HomeFiles

    folder = f".kubi-test-{uuid.uuid4().hex}"
    mine = Path.home() / folder
    mine.mkdir()
    try:
        fact = HomeFiles()
        ask = fact.command(("root", "no-such-person"), f"{folder}/config", userspaces.MARKER)

        def found():
            out = subprocess.run(["sh", "-c", ask], capture_output=True, text=True, check=True)
            return fact.process(out.stdout.splitlines())

        assert found() == {"root": ("absent", None), "no-such-person": ("nouser", None)}
        (mine / "config").write_text("somebody else's\n")
        assert found()["root"] == ("other", None)
        content = f"{userspaces.MARKER}\nkind: Config\n"
        (mine / "config").write_text(content)
        digest = hashlib.sha256(content.encode()).hexdigest()
        assert found()["root"] == ("kubi", digest)
        (mine / "config").unlink()
        (mine / "config").symlink_to("/etc/passwd")  # a link is never kubi's
        assert found()["root"] == ("other", None)
    finally:
        shutil.rmtree(mine)

"""Plans of deploys/userspaces.py, from the input host, against the real API server of the
unit tier (kubi's tunnel stands aside for the fixture's direct client; the lab runs it):
the objects by a dry run, then each person's kubeconfig, written or removed as them."""

from __future__ import annotations

import hashlib
import logging

import pytest

from kubi import apply, userspaces
from kubi.cluster_pki import cluster_pki
from kubi.inventory import declare
from kubi.secrets import for_platform
from tests.unit.test_userspaces import PEOPLE, tokens_when_filled

from .harness import plan

DEPLOY = "deploys/userspaces.py"
KEY = f"marker={userspaces.MARKER}, path=.kube/config, people=alice,bob,olga"


@pytest.fixture
def on(description, tmp_path):
    description["secrets_dir"] = str(tmp_path / "secrets")
    description["users"] = PEOPLE
    description["userspaces"] = {"spaces": [{"name": "plan-team", "members": ["alice", "bob"]}]}
    return description


def home(**found):
    people = {"alice": ("absent", None), "bob": ("absent", None), "olga": ("absent", None)}
    return {"kubi.facts.HomeFiles": {KEY: {**people, **found}}}


def test_a_new_userspace_is_planned_then_its_kubeconfigs_made_at_execution(on, direct, caplog):
    caplog.set_level(logging.INFO, logger="pyinfra")
    lines = plan(DEPLOY, "in1", on, home())
    objects, *kubeconfigs = lines[0], *lines[1:]
    assert objects.startswith("userspaces (plan-team): ") and "FunctionCommand" in objects
    said = "\n".join(r.getMessage() for r in caplog.records)
    assert "in1: userspaces: Namespace plan-team: created" in said
    assert "in1: userspaces: RoleBinding plan-team/developer: created" in said
    alice = [line for line in kubeconfigs if line.startswith("kubeconfig of alice (plan-team)")]
    # the token exists once the run made the account: the file is made at execution
    assert len(alice) == 3 and alice[1].startswith(
        "kubeconfig of alice (plan-team): upload /run/kubi-upload/home-"
    )
    staged = alice[1].split()[5]
    assert "runuser -u alice -- sh -c " in alice[2] and f" < {staged}" in alice[2]
    assert not [line for line in kubeconfigs if line.startswith("kubeconfig of olga")]


def test_a_converged_platform_plans_nothing(on, direct):
    on["userspaces"] = {"spaces": [{"name": "plan-conv", "members": ["alice", "bob"]}]}
    cfg = declare(None, **on).config
    objects = userspaces.objects(cfg)
    apply.apply(direct, objects, component=userspaces.COMPONENT, platform=cfg.name)
    tokens = tokens_when_filled(direct, cfg)
    ca = cluster_pki(for_platform(cfg)).ca.cert
    written = {
        person: ("kubi", hashlib.sha256(
            userspaces.kubeconfig(cfg, person, tokens, ca, cfg.cockpit.api_port).encode()
        ).hexdigest())
        for person in ("alice", "bob")
    }  # fmt: skip
    assert plan(DEPLOY, "in1", on, home(**written)) == []
    # bob leaves the userspace: the binding loses him and his account and token are pruned;
    # his file goes (removed as him); alice's stays as it is (her token did not change)
    on["userspaces"] = {"spaces": [{"name": "plan-conv", "members": ["alice"]}]}
    lines = plan(DEPLOY, "in1", on, home(**written))
    assert lines[0].startswith("userspaces (plan-conv): ")
    bob = [line for line in lines if line.startswith("kubeconfig of bob")]
    assert bob == [
        "kubeconfig of bob (in no userspace): sh -c 'runuser -u bob -- sh -c "
        + bob[0].split("runuser -u bob -- sh -c ", 1)[1]
    ]
    assert "rm -f" in bob[0]
    assert not [line for line in lines if line.startswith("kubeconfig of alice")]
    apply.prune(direct, [], component=userspaces.COMPONENT, platform=cfg.name,
                kinds=userspaces.KINDS)  # fmt: skip


def test_a_file_kubi_did_not_write_is_kept_aside(on, direct):
    on["userspaces"] = {"spaces": [{"name": "plan-aside", "members": ["alice", "bob"]}]}
    cfg = declare(None, **on).config
    apply.apply(direct, userspaces.objects(cfg), component=userspaces.COMPONENT,
                platform=cfg.name)  # fmt: skip
    tokens_when_filled(direct, cfg)
    lines = plan(DEPLOY, "in1", on, home(alice=("other", None)))
    alice = [line for line in lines if line.startswith("kubeconfig of alice")]
    assert alice[1].startswith("kubeconfig of alice (plan-aside): upload /run/kubi-upload/home-")
    assert userspaces.MARKER in alice[1]  # the token is known now: written as planned
    assert ".before-kubi" in alice[2]
    apply.prune(direct, [], component=userspaces.COMPONENT, platform=cfg.name,
                kinds=userspaces.KINDS)  # fmt: skip


@pytest.mark.parametrize("host", ["out1", "repo1", "cp1", "w1"])
def test_nowhere_else(on, host):
    assert plan(DEPLOY, host, on, {}) == []

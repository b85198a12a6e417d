"""Plans of deploys/firewall.py: checked before loading, converged once loaded, repaired when
the loaded table drifts, and refused when it would lock the deploy's SSH out."""

from __future__ import annotations

import pytest

from kubi import firewall

from .conftest import managed
from .harness import plan, uploads

RULES = firewall.RULES_FILE
UNIT_FILE = "/etc/systemd/system/kubi-firewall.service"
ADMIN = "10.20.0.1"


@pytest.fixture
def platform(description):
    description["firewall"] = {"admin_networks": [f"{ADMIN}/32"]}
    description["users"] = [
        {
            "name": "alice",
            "role": "ops",
            "keys": [
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIqI4910CfGV/VLbLTy6XXLKZwm/HZQSG/N0iAG0D29c"
            ],
        }
    ]
    return description


def facts(client=ADMIN, loaded=None, files=None, installed=False):
    return {
        "deb.DebPackages": {"_": {"nftables": ["1.0.6"]} if installed else {}},
        "facts.firewall.FirewallState": {
            "_": {"client": client, "loaded": loaded, "uid_range": (1000, 60000)}
        },
        "kubi.facts.ManagedFile": {f"path={p}": (files or {}).get(p) for p in (RULES, UNIT_FILE)},
        "kubi.facts.ServiceState": {
            "unit=kubi-firewall": {"active": bool(files), "enabled": True if files else None}
        },
    }


def converged(description, host):
    written = uploads(plan("deploys/firewall.py", host, description, facts()))
    files = {path: managed(content) for path, content in written.items()}
    return facts(
        loaded=firewall.loaded_digest(written[RULES]), files=files, installed=True
    ), written


@pytest.mark.parametrize("host", ["in1", "w1"])
def test_fresh_host_checks_then_loads_then_enables(platform, host):
    lines = plan("deploys/firewall.py", host, platform, facts())
    assert lines[0].startswith("nftables: if ! out=$(") and "install nftables 2>&1)" in lines[0]
    rules = [line for line in lines if line.startswith("firewall rules: ")]
    assert rules[0] == "firewall rules: mkdir -p -m 755 /etc/kubi"
    assert rules[1].startswith(f"firewall rules: upload {RULES}.kubi-new")
    # nft checks the new file in place before anything is loaded; the old one comes back
    # if it refuses.
    assert f"if out=$(nft -c -f {RULES} 2>&1); then" in rules[2]
    assert f"nft -f {RULES}; else" in rules[2]
    assert "firewall at boot: " in "\n".join(lines)
    assert lines[-1] == "firewall unit enabled: systemctl enable kubi-firewall"
    text = uploads(lines)[RULES]
    assert ('meta skuid != { "alice" } jump people' in text) == (host == "in1")


@pytest.mark.parametrize("host", ["in1", "out1", "repo1", "cp1", "w1"])
def test_converged_host_plans_nothing(platform, host):
    state, _ = converged(platform, host)
    assert plan("deploys/firewall.py", host, platform, state) == []


def test_a_table_removed_or_changed_by_hand_is_loaded_again(platform):
    state, _ = converged(platform, "cp1")
    for loaded in (None, "0123456789abcdef"):
        state["facts.firewall.FirewallState"]["_"]["loaded"] = loaded
        assert plan("deploys/firewall.py", "cp1", platform, state) == [
            f"firewall rules loaded (the table was missing or changed by hand): nft -f {RULES}"
        ]


def test_rules_that_would_lock_the_deploy_out_are_refused_before_any_change(platform):
    state, _ = converged(platform, "w1")
    platform["firewall"]["admin_networks"] = ["10.99.0.0/24"]
    lines = plan("deploys/firewall.py", "w1", platform, state)
    assert len(lines) == 1 and lines[0].startswith("firewall keeps the deploy's SSH: echo")
    assert "this deploy connects from 10.20.0.1" in lines[0]
    assert "firewall.admin_networks does not include" in lines[0] and "exit 1" in lines[0]
    # Through the input host (ssh -J) the deploy stays allowed.
    state["facts.firewall.FirewallState"]["_"]["client"] = "10.20.0.11"
    assert not any("keeps the deploy" in line for line in
                   plan("deploys/firewall.py", "w1", platform, state))  # fmt: skip


def test_a_non_root_deploy_account_keeps_its_way_out_of_the_input_host(platform):
    platform["ssh"] = {"user": "admin"}
    text = uploads(plan("deploys/firewall.py", "in1", platform, facts()))[RULES]
    assert 'meta skuid != { "admin", "alice" } jump people' in text

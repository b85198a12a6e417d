"""Plans of deploys/bastion.py: people's accounts, forwarding policy, removal."""

from __future__ import annotations

import pytest

from .conftest import managed
from .harness import plan, uploads

# Real public keys (the config decodes them): derived from fixed test seeds.
ALICE = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIqI4910CfGV/VLbLTy6XXLKZwm/HZQSG/N0iAG0D29c a@laptop"
DAVE = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIE5dw6ofRdfVqNUZsNMfszLjYqRtO43ol32D1uPybOU d@laptop"
ALICE_NEW = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO1JKMYo0cLG6ukDOJBZlWEpWSc6XGP5NjbBRhSshzfR a@new"
PATHS = {
    "sudoers": "/etc/sudoers.d/kubi-ops",
    "sshd": "/etc/ssh/sshd_config.d/20-kubi-bastion.conf",
    "alice": "/home/alice/.ssh/authorized_keys",
    "dave": "/home/dave/.ssh/authorized_keys",
}


@pytest.fixture
def people(description):
    description["users"] = [
        {"name": "alice", "role": "ops", "keys": [ALICE]},
        {"name": "dave", "role": "dev", "keys": [DAVE]},
    ]
    return description


def facts(accounts, files=None):
    return {
        "facts.bastion.KubiAccounts": {"_": accounts},
        "kubi.facts.ManagedFile": {f"path={p}": (files or {}).get(p) for p in PATHS.values()},
    }


NONE = {"groups": {}, "users": {}}


def converged(description, host):
    written = uploads(plan("deploys/bastion.py", host, description, facts(NONE)))
    on_input = host == "in1"
    accounts = {
        "groups": {"kubi-ops": ["alice"], "kubi-dev": ["dave"] if on_input else []},
        "users": {
            "alice": {"home": "/home/alice", "shell": "/bin/bash"},
            **({"dave": {"home": "/home/dave", "shell": "/bin/bash"}} if on_input else {}),
        },
    }
    files = {p: managed(c, "440" if p == PATHS["sudoers"] else "644") for p, c in written.items()}
    for person in ("alice", "dave"):
        if PATHS[person] in written:
            files[PATHS[person]] = {**managed(written[PATHS[person]], "600"), "user": person,
                                    "group": person}  # fmt: skip
    return facts(accounts, files)


def test_input_host_gets_every_person_and_the_forwarding_policy(people):
    lines = plan("deploys/bastion.py", "in1", people, facts(NONE))
    assert lines[:2] == [
        "groups kubi-ops kubi-dev: groupadd --system kubi-ops",
        "groups kubi-ops kubi-dev: groupadd --system kubi-dev",
    ]
    assert (
        "account dave (dev): useradd --create-home --shell /bin/bash --groups kubi-dev "
        "--comment 'kubi dev' dave"
    ) in lines
    assert "account dave (dev): usermod --password '*' dave" in lines
    written = uploads(lines)
    assert written[PATHS["alice"]] == f"{ALICE}\n" and written[PATHS["dave"]] == f"{DAVE}\n"
    policy = written[PATHS["sshd"]]
    dev = policy[policy.index("Match Group kubi-dev") : policy.index("Match Group kubi-ops")]
    assert "AllowTcpForwarding local" in dev
    assert "PermitOpen 127.0.0.1:8080 localhost:8080 127.0.0.1:6443 localhost:6443" in dev
    assert "AllowTcpForwarding yes" in policy[policy.index("Match Group kubi-ops") :]
    checked = [line for line in lines if line.startswith("ssh forwarding") and "sshd -t" in line]
    assert len(checked) == 1 and "systemctl reload ssh" in checked[0]
    assert "visudo -c" in [line for line in lines if line.startswith("sudo for operators: sh")][0]


def test_other_hosts_get_operators_only(people):
    text = "\n".join(plan("deploys/bastion.py", "cp1", people, facts(NONE)))
    assert "useradd" in text and "alice" in text
    assert "dave" not in text and "20-kubi-bastion" not in text


@pytest.mark.parametrize("host", ["in1", "cp1"])
def test_converged_plans_nothing(people, host):
    assert plan("deploys/bastion.py", host, people, converged(people, host)) == []


def test_person_removed_from_config_loses_the_account(people):
    current = converged(people, "in1")
    people["users"] = people["users"][:1]  # dave left
    lines = plan("deploys/bastion.py", "in1", people, current)
    assert lines == [
        "remove account dave (no longer in the config): pkill -KILL -u dave || true",
        "remove account dave (no longer in the config): userdel --remove dave",
    ]


def test_role_change_moves_the_account_between_groups(people):
    current = converged(people, "in1")
    people["users"][1]["role"] = "ops"
    lines = plan("deploys/bastion.py", "in1", people, current)
    assert lines == [
        "account dave now ops: gpasswd --delete dave kubi-dev",
        "account dave now ops: gpasswd --add dave kubi-ops",
    ]


def test_key_rotation_rewrites_authorized_keys_only(people):
    current = converged(people, "in1")
    people["users"][0]["keys"] = [ALICE_NEW]
    lines = plan("deploys/bastion.py", "in1", people, current)
    assert {line.partition(":")[0] for line in lines} == {"ssh keys of alice"}

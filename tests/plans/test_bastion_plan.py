"""Plans of deploys/bastion.py: people's accounts, their keys, forwarding policy, removal."""

from __future__ import annotations

import pytest

from .conftest import managed
from .harness import plan, uploads

# Real public keys (the config decodes them): derived from fixed test seeds.
ALICE = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIqI4910CfGV/VLbLTy6XXLKZwm/HZQSG/N0iAG0D29c a@laptop"
DAVE = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIE5dw6ofRdfVqNUZsNMfszLjYqRtO43ol32D1uPybOU d@laptop"
ALICE_NEW = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO1JKMYo0cLG6ukDOJBZlWEpWSc6XGP5NjbBRhSshzfR a@new"
KEYS_DIR = "/etc/ssh/authorized_keys"
PATHS = {
    "sudoers": "/etc/sudoers.d/kubi-ops",
    "sshd": "/etc/ssh/sshd_config.d/20-kubi-bastion.conf",
    "keys": "/etc/ssh/sshd_config.d/15-kubi-keys.conf",
    "alice": f"{KEYS_DIR}/alice",
    "dave": f"{KEYS_DIR}/dave",
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


NONE = {"groups": {}, "users": {}, "keys": {"folder": None, "files": []}}


def converged(description, host):
    written = uploads(plan("deploys/bastion.py", host, description, facts(NONE)))
    on_input = host == "in1"
    accounts = {
        "groups": {"kubi-ops": ["alice"], "kubi-dev": ["dave"] if on_input else []},
        "users": {
            "alice": {"home": "/home/alice", "shell": "/bin/bash"},
            **({"dave": {"home": "/home/dave", "shell": "/bin/bash"}} if on_input else {}),
        },
        "keys": {"folder": "root:root 755", "files": ["alice", "dave"] if on_input else ["alice"]},
    }
    files = {p: managed(c, "440" if p == PATHS["sudoers"] else "644") for p, c in written.items()}
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
    assert f"folder {KEYS_DIR}: install -d -m 755 -o root -g root {KEYS_DIR}" in lines
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
        f"remove ssh keys of dave (no longer in the config here): sh -c 'rm -f {KEYS_DIR}/dave'",
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


@pytest.mark.parametrize("host", ["in1", "cp1"])
def test_keys_are_root_files_outside_the_homes(people, host):
    lines = plan("deploys/bastion.py", host, people, facts(NONE))
    written = uploads(lines)
    keys = {p for p in written if p.startswith(f"{KEYS_DIR}/")}
    assert keys == ({PATHS["alice"], PATHS["dave"]} if host == "in1" else {PATHS["alice"]})
    for line in lines:
        if line.startswith("ssh keys of "):  # root's, world-readable: sshd reads it as the user
            assert "chmod 644" in line or line.partition(": ")[2].startswith("upload ")
            assert "chown root:root" in line or "upload " in line
    # Nothing is written, made or changed in a home: the person controls it.
    commands = [line.partition(": ")[2] for line in lines]
    assert [c for c in commands if c.startswith("upload /home") or c.startswith("upload ~")] == []
    acting = [c for c in commands if not c.startswith("upload ")]
    assert [c for c in acting if "/home" in c or "~" in c or ".ssh/" in c] == []
    conf = written[PATHS["keys"]]
    assert "Match Group kubi-ops,kubi-dev User *,!root\n" in conf
    assert f"    AuthorizedKeysFile {KEYS_DIR}/%u\n" in conf
    [install] = [
        line for line in lines if line.startswith("ssh keys of people from ") and "sh -c" in line
    ]
    assert "sshd -t" in install and "systemctl reload ssh" in install
    # Written once every key file is there, so nobody is locked out in between.
    names = [line.partition(": ")[0] for line in lines]
    assert names.index("ssh keys of people from /etc/ssh/authorized_keys only") > max(
        i
        for i, name in enumerate(names)
        if name.startswith("ssh keys of ") and "people" not in name
    )


def test_the_deploy_account_keeps_its_own_keys(people):
    people["ssh"] = {"user": "admin"}
    conf = uploads(plan("deploys/bastion.py", "cp1", people, facts(NONE)))[PATHS["keys"]]
    assert "Match Group kubi-ops,kubi-dev User *,!admin\n" in conf


def test_key_files_of_people_not_here_are_removed(people):
    current = converged(people, "cp1")
    current["facts.bastion.KubiAccounts"]["_"]["keys"]["files"] = ["alice", "dave", "eve"]
    current["kubi.facts.ManagedFile"][f"path={KEYS_DIR}/eve"] = managed("ssh-ed25519 EEEE eve\n")
    current["kubi.facts.ManagedFile"][f"path={PATHS['dave']}"] = managed(f"{DAVE}\n")
    assert plan("deploys/bastion.py", "cp1", people, current) == [
        f"remove ssh keys of dave (no longer in the config here): sh -c 'rm -f {KEYS_DIR}/dave'",
        f"remove ssh keys of eve (no longer in the config here): sh -c 'rm -f {KEYS_DIR}/eve'",
    ]


def test_a_keys_folder_others_could_write_is_made_root_s_again(people):
    current = converged(people, "in1")
    current["facts.bastion.KubiAccounts"]["_"]["keys"]["folder"] = "root:kubi-dev 775"
    assert plan("deploys/bastion.py", "in1", people, current) == [
        f"folder {KEYS_DIR}: install -d -m 755 -o root -g root {KEYS_DIR}"
    ]

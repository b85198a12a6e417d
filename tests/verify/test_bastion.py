"""bastion: people's accounts everywhere they belong, and nowhere else."""

from __future__ import annotations

import pytest


def expected_people(platform, spec):
    return [u for u in platform.users if "input" in spec.roles or u.role == "ops"]


def test_accounts_match_the_config(node, platform, spec):
    wanted = {u.name: f"kubi-{u.role}" for u in expected_people(platform, spec)}
    members = {}
    for group in ("kubi-ops", "kubi-dev"):
        line = node.run(f"getent group {group}").stdout.strip()
        for name in filter(None, line.rpartition(":")[2].split(",")):
            members[name] = group
    assert members == wanted  # removed people are gone


KEYS_DIR = "/etc/ssh/authorized_keys"


def test_keys_only(node, platform, spec):
    for person in expected_people(platform, spec):
        user = node.user(person.name)
        assert user.exists and user.shell == "/bin/bash"
        assert user.password == "*", person.name  # no password can ever match


def test_keys_are_root_files_outside_the_homes(node, platform, spec):
    folder = node.file(KEYS_DIR)
    assert folder.is_directory and not folder.is_symlink
    assert (folder.user, folder.group, folder.mode) == ("root", "root", 0o755)
    people = expected_people(platform, spec)
    listed = node.check_output(f"find {KEYS_DIR} -mindepth 1 -printf '%f\\n'").split()
    assert sorted(listed) == sorted(p.name for p in people)  # removed people's files are gone
    for person in people:
        keys = node.file(f"{KEYS_DIR}/{person.name}")
        assert keys.is_file and not keys.is_symlink
        assert (keys.user, keys.group, keys.mode) == ("root", "root", 0o644), person.name
        assert keys.content_string.split("\n")[:-1] == list(person.keys)


def test_sshd_reads_people_s_keys_from_root_s_files_only(node, platform, spec):
    for person in expected_people(platform, spec):
        settings = effective_sshd(node, person.name)
        assert settings["authorizedkeysfile"] == f"{KEYS_DIR}/%u", person.name
    # The deploy's own account keeps the host's own setting: kubi cannot lock itself out.
    assert effective_sshd(node, spec.ssh_user)["authorizedkeysfile"] != f"{KEYS_DIR}/%u"


def test_operators_have_sudo_developers_do_not(node, platform, spec):
    for person in expected_people(platform, spec):
        listed = node.run(f"sudo -l -U {person.name}").stdout
        assert ("NOPASSWD: ALL" in listed) is (person.role == "ops"), person.name


def effective_sshd(node, user: str) -> dict[str, str]:
    out = node.check_output(f"sshd -T -C user={user},host=client,addr=192.0.2.1")
    settings: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        settings[key] = value
    return settings


@pytest.mark.roles("input")
def test_forwarding_policy_on_the_input_host(node, platform):
    ports = (platform.cockpit.port, platform.cockpit.api_port)
    for person in platform.users:
        settings = effective_sshd(node, person.name)
        if person.role == "ops":
            assert settings["allowtcpforwarding"] == "yes"
            assert settings["permitopen"] == "any"
        else:
            assert settings["allowtcpforwarding"] == "local"
            allowed = set(settings["permitopen"].split())
            assert allowed == {f"{h}:{p}" for h in ("127.0.0.1", "localhost") for p in ports}
        assert settings["passwordauthentication"] == "no"
    # Match blocks end with the policy file: other accounts keep the defaults.
    assert effective_sshd(node, "root")["permitopen"] == "any"

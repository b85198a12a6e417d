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


def test_keys_only(node, platform, spec):
    for person in expected_people(platform, spec):
        user = node.user(person.name)
        assert user.exists and user.shell == "/bin/bash"
        assert user.password == "*", person.name  # no password can ever match
        keys = node.file(f"{user.home}/.ssh/authorized_keys")
        assert keys.mode == 0o600 and keys.user == person.name
        assert keys.content_string.split("\n")[:-1] == list(person.keys)


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

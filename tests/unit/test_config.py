"""The platform description: defaults, and one clear error per kind of bad input."""

from __future__ import annotations

import copy
from ipaddress import IPv4Address

import pytest

from kubi.config import ConfigError, validate


def description(**overrides):
    """A valid five-role platform on loopback-style documentation names."""
    desc = {
        "name": "unit",
        "groups": {
            "input": [("in1.example.invalid", {"ip": "10.10.0.11"})],
            "output": [("out1.example.invalid", {"ip": "10.10.0.12"})],
            "repository": [("repo1.example.invalid", {"ip": "10.10.0.13"})],
            "control_plane": [("cp1.example.invalid", {"ip": "10.10.0.21"})],
            "workers": [("w1.example.invalid", {"ip": "10.10.0.31"})],
        },
    }
    desc.update(overrides)
    return desc


def problems(desc) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate(desc, source="inventories/unit.py")
    return info.value.problems


def only_problem(desc) -> str:
    found = problems(desc)
    assert len(found) == 1, found
    return found[0]


def test_valid_description_gets_documented_defaults():
    platform = validate(description())
    assert [h.name for h in platform.role("control_plane")] == ["cp1.example.invalid"]
    assert str(platform.network.pod_cidr) == "10.233.64.0/18"
    assert str(platform.network.service_cidr) == "10.233.0.0/18"
    assert platform.seed.upgrade == "first"
    assert platform.ssh.user == "root"
    assert platform.host("w1.example.invalid").ip == IPv4Address("10.10.0.31")
    assert platform.repository_alias == "repository.kubi.internal"
    # Host keys are checked strictly unless the inventory asks for accept-new.
    assert platform.ssh.strict_host_key_checking == "yes"


def test_group_data_then_host_data_override_platform_ssh():
    desc = description(group_data={"workers": {"ssh_user": "admin", "ssh_port": 2222}})
    desc["groups"]["workers"].append(("w2.example.invalid", {"ip": "10.10.0.32", "ssh_port": 22}))
    platform = validate(desc)
    w1, w2 = platform.role("workers")
    assert (w1.ssh_user, w1.ssh_port) == ("admin", 2222)
    assert (w2.ssh_user, w2.ssh_port) == ("admin", 22)
    assert platform.host("cp1.example.invalid").ssh_user == "root"


def test_ip_defaults_to_an_ip_address():
    desc = description()
    desc["groups"]["workers"] = [("w1.example.invalid", {"address": "10.10.0.31"})]
    assert str(validate(desc).host("w1.example.invalid").ip) == "10.10.0.31"


def test_missing_required_role_group_is_named():
    desc = description()
    del desc["groups"]["repository"]
    message = only_problem(desc)
    assert message.startswith("group 'repository': missing or empty")


def test_unknown_group_is_refused_with_the_known_groups():
    desc = description()
    desc["groups"]["worker"] = desc["groups"].pop("workers")
    found = problems(desc)
    assert any("group 'worker': unknown role group; the groups are input" in p for p in found)
    assert any("group 'workers': missing or empty" in p for p in found)


def test_two_roles_on_one_host_are_refused_where_not_allowed():
    desc = description()
    desc["groups"]["output"] = [("in1.example.invalid", {"ip": "10.10.0.11"})]
    message = only_problem(desc)
    assert "host 'in1.example.invalid': in groups input, output" in message
    assert "only combine control_plane and workers" in message


def test_control_plane_may_also_be_a_worker():
    desc = description()
    desc["groups"]["workers"].append("cp1.example.invalid")
    platform = validate(desc)
    assert platform.host("cp1.example.invalid").roles == ("control_plane", "workers")


@pytest.mark.parametrize("count", [2, 4])
def test_even_control_plane_count_is_refused(count):
    desc = description()
    desc["groups"]["control_plane"] = [
        (f"cp{i}.example.invalid", {"ip": f"10.10.0.{20 + i}"}) for i in range(1, count + 1)
    ]
    message = only_problem(desc)
    assert f"group 'control_plane': {count} hosts; etcd needs an odd number" in message


def test_single_host_roles_take_one_host():
    desc = description()
    desc["groups"]["input"].append(("in2.example.invalid", {"ip": "10.10.0.19"}))
    assert "this role runs on exactly one host" in only_problem(desc)


def test_duplicate_addresses_are_refused():
    desc = description()
    desc["groups"]["workers"].append(("w2.example.invalid", {"ip": "10.10.0.31"}))
    message = only_problem(desc)
    assert message == (
        "host 'w2.example.invalid': address 10.10.0.31 is also used by host "
        "'w1.example.invalid'; every host needs its own address"
    )


def test_same_host_listed_twice_in_a_group():
    desc = description()
    desc["groups"]["workers"].append("w1.example.invalid")
    assert "host 'w1.example.invalid' is listed twice" in only_problem(desc)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("pod_cidr", "10.233.64.1/18", "has host bits set"),
        ("service_cidr", "10.233.0.0/33", "not a valid IPv4 CIDR"),
        ("pod_cidr", "banana", "not a valid IPv4 CIDR"),
    ],
)
def test_malformed_cidr_is_refused(field, value, expected):
    message = only_problem(description(network={field: value}))
    assert message.startswith(f"field 'network.{field}': not a valid IPv4 CIDR")
    assert expected in message


def test_overlapping_cidrs_are_refused():
    message = only_problem(
        description(network={"pod_cidr": "10.233.0.0/16", "service_cidr": "10.233.0.0/18"})
    )
    assert (
        "network.pod_cidr (10.233.0.0/16) overlaps network.service_cidr (10.233.0.0/18)" in message
    )


def test_host_network_overlapping_cluster_range_is_refused():
    message = only_problem(description(network={"host_cidrs": ["10.233.0.0/24"]}))
    assert "network.service_cidr (10.233.0.0/18) overlaps network.host_cidrs[0]" in message


def test_host_outside_host_networks_is_refused():
    message = only_problem(description(network={"host_cidrs": ["10.10.0.0/28", "10.10.0.16/29"]}))
    assert "host 'w1.example.invalid': ip 10.10.0.31 is outside network.host_cidrs" in message


def test_host_inside_pod_range_is_refused():
    desc = description()
    desc["groups"]["workers"] = [("w1.example.invalid", {"ip": "10.233.70.1"})]
    assert "lies inside network.pod_cidr" in only_problem(desc)


def test_unknown_key_suggests_the_right_one():
    message = only_problem(description(sed={"upgrade": "always"}))
    assert message.startswith("field 'sed': unknown field (did you mean 'seed'?)")


def test_unknown_host_key_names_the_host():
    desc = description()
    desc["groups"]["workers"] = [("w1.example.invalid", {"ip": "10.10.0.31", "ssh_usr": "x"})]
    message = only_problem(desc)
    assert message.startswith(
        "host 'w1.example.invalid' (group 'workers'), field 'ssh_usr': unknown field "
        "(did you mean 'ssh_user'?)"
    )


def test_wrong_type_is_refused():
    desc = description()
    desc["groups"]["workers"] = [("w1.example.invalid", {"ip": "10.10.0.31", "ssh_port": "22"})]
    message = only_problem(desc)
    assert message.startswith("host 'w1.example.invalid' (group 'workers'), field 'ssh_port'")
    assert "valid integer" in message


def test_missing_ssh_key_file_is_refused(tmp_path):
    missing = tmp_path / "nope"
    message = only_problem(description(ssh={"key": str(missing)}))
    assert message.startswith(f"field 'ssh.key': file {missing} does not exist")


def test_existing_ssh_key_file_is_accepted(tmp_path):
    key = tmp_path / "id"
    key.write_text("not checked further")
    assert validate(description(ssh={"key": str(key)})).host("w1.example.invalid").ssh_key == key


def test_bad_host_name_and_time_zone():
    desc = description(seed={"timezone": "Mars/Olympus"})
    desc["groups"]["workers"] = ["Worker_1"]
    found = problems(desc)
    assert any(
        p.startswith("host 'Worker_1' (group 'workers'), its name: must be a lower-case")
        for p in found
    )
    assert any(p.startswith("field 'seed.timezone': unknown time zone") for p in found)


def test_every_problem_is_listed_at_once():
    desc = description(sed={}, network={"pod_cidr": "10.0.0.1/8"})
    del desc["groups"]["output"]
    desc["groups"]["control_plane"].append(("cp2.example.invalid", {"ip": "10.10.0.22"}))
    found = problems(desc)
    assert len(found) == 4, found
    rendered = ConfigError(found, "inventories/unit.py").render()
    assert (
        rendered.splitlines()[0] == "inventories/unit.py: 4 problem(s) in the platform description"
    )


def test_description_is_not_mutated():
    desc = description(group_data={"workers": {"ssh_user": "admin"}})
    before = copy.deepcopy(desc)
    validate(desc)
    assert desc == before


def test_users_are_validated_without_echoing_key_material():
    # A pasted private key (header built in parts: no committed file carries one).
    pasted = "-----BEGIN OPENSSH " + "PRIVATE KEY----- b3BlbnNzaC1rZXktdjEAAAAABG5vbmU="
    found = problems(
        description(
            users=[
                {"name": "alice", "role": "ops", "keys": ["ssh-ed25519 AAAAC3NzaC1 alice@laptop"]},
                {"name": "root", "role": "boss", "keys": [pasted]},
            ]
        )
    )
    for start in (
        "user 'alice', field 'keys.0': its key data is not valid base64",
        "user 'root', field 'name': 'root' is a system or service account",
        "user 'root', field 'role'",
        "user 'root', field 'keys.0': this is a private key or a certificate",
    ):
        assert any(p.startswith(start) for p in found), start
    assert not any("PRIVATE KEY" in p or "b3BlbnNz" in p for p in found)


def test_log_stack_versions_follow_the_matrix():
    message = only_problem(description(versions={"opensearch": "2.17.0"}))
    assert "opensearch 2.17.0 is not supported by graylog 6.1 (supported: 1.1 to 2.15)" in message


def test_registry_certificate_needs_its_key(tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    message = only_problem(description(registry={"tls_cert": str(cert)}))
    assert "give both tls_cert and tls_key" in message


def test_package_proxy_switch_points_other_hosts_at_the_repository():
    platform = validate(
        description(package_proxy={"for_all_hosts": True}, apt_proxy="http://up:3142")
    )
    assert platform.apt_proxy_for(platform.host("w1.example.invalid")) == (
        "http://repository.kubi.internal:3142"
    )
    assert platform.apt_proxy_for(platform.host("repo1.example.invalid")) == "http://up:3142"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ({"charts": {"path": "/var/lib/../../etc"}}, "charts.path"),
        ({"registry": {"storage_path": "/srv/reg; rm -rf /"}}, "registry.storage_path"),
        ({"package_proxy": {"upstream_proxy": "http://proxy:3142/$(id)"}}, "upstream_proxy"),
        ({"apt_proxy": "http://a'b:3142"}, "apt_proxy"),
        ({"graylog": {"apt_mirror": "http://mirror example/"}}, "graylog.apt_mirror"),
        ({"seed": {"extra_packages": ["vim", "curl; reboot"]}}, "seed.extra_packages.1"),
        ({"seed": {"ntp_servers": ["pool.ntp.org", "-oProxyCommand=x"]}}, "seed.ntp_servers.1"),
        ({"ssh": {"user": "root --help"}}, "ssh.user"),
    ],
)
def test_strings_that_reach_a_shell_or_a_file_are_matched_in_full(field, value):
    """A path, URL, package or account name that reaches a host is refused unless it is
    exactly what its type allows: nothing can ride along into a command or a file."""
    found = only_problem(description(**field))
    assert value in found


def test_matrix_file_is_checked_when_loaded(tmp_path):
    from kubi.config import matrices

    bad = tmp_path / "log_stack.toml"
    bad.write_text('[graylog."6.2"]\nopensearch = ["2.15", "1.1"]\nmongodb = ["5.0"]\n')
    with pytest.raises(matrices.MatrixError) as refused:
        matrices.load("log_stack", matrices.LogStackMatrix, tmp_path)
    message = str(refused.value)
    assert str(bad) in message
    assert "graylog.6.2.opensearch: lowest 2.15 is above highest 1.1" in message
    assert "graylog.6.2.mongodb: must be [lowest, highest]" in message
    bad.write_text("[graylog\n")
    with pytest.raises(matrices.MatrixError, match="cannot be read as TOML"):
        matrices.load("log_stack", matrices.LogStackMatrix, tmp_path)


def test_shipped_matrix_is_the_one_versions_check():
    from kubi.config import matrices

    rows = matrices.log_stack().graylog
    assert rows["6.1"].opensearch.high == "2.15"
    assert "2.16.0" not in rows["6.1"].opensearch and "2.15.0" in rows["6.1"].opensearch

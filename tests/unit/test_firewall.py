"""The host firewalls' rules (kubi/firewall.py): who may open what, and the nftables text.

Rules are asked as questions ("may this address open this port?") rather than compared
as text, and every host's ruleset goes through the real nft parser (`nft -c`) in a
network namespace of its own, so nothing on this machine is filtered.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess

import pytest

from kubi import firewall
from kubi.config import validate
from tests.plans.conftest import DESCRIPTION

ADMIN = "10.20.0.1"
IN, OUT, REPO, CP, W = "10.20.0.11", "10.20.0.12", "10.20.0.13", "10.20.0.21", "10.20.0.31"
OUTSIDE = "203.0.113.9"
POD = "10.233.64.7"
NFT = shutil.which("nft") or "/usr/sbin/nft"
NO_NFT = "no nft binary (scripts/bootstrap installs Debian's nftables)"


def rulesets(**settings):
    description = copy.deepcopy(DESCRIPTION)
    description["firewall"] = {"admin_networks": [f"{ADMIN}/32"], **settings}
    cfg = validate(description)
    ip_of = {h.name: str(h.ip) for h in cfg.hosts}
    return cfg, {h.name: firewall.ruleset(cfg, h, ip_of) for h in cfg.hosts}


def admits(rules: firewall.Ruleset, address: str, port: int) -> bool:
    return any(o.admits(address, port) for o in rules.openings)


def test_ssh_only_from_the_input_host_and_admin_networks():
    _, rules = rulesets()
    for name in ("out1", "repo1", "cp1", "w1"):
        assert admits(rules[name], IN, 22) and admits(rules[name], ADMIN, 22)
        for source in (OUT, REPO, CP, OUTSIDE):
            assert not admits(rules[name], source, 22), (name, source)
    # The input host is the way in: anywhere by default, or what ssh_from says.
    assert admits(rules["in1"], OUTSIDE, 22)
    _, narrow = rulesets(ssh_from=["198.51.100.0/24"])
    assert admits(narrow["in1"], "198.51.100.7", 22) and not admits(narrow["in1"], OUTSIDE, 22)


def test_services_open_to_the_platform_hosts_only():
    _, rules = rulesets()
    for host, port in (("repo1", 443), ("repo1", 3142), ("out1", 80), ("out1", 12201)):
        for source in (IN, OUT, REPO, CP, W, ADMIN):
            assert admits(rules[host], source, port), (host, port, source)
        assert not admits(rules[host], OUTSIDE, port), (host, port)
    # Nothing else: the input host takes only SSH, the others nothing of each other's.
    assert [o.ports for o in rules["in1"].openings] == ["22"]
    assert not admits(rules["repo1"], IN, 80) and not admits(rules["out1"], IN, 443)


def test_components_that_are_off_open_nothing():
    description = copy.deepcopy(DESCRIPTION)
    description["components"] = {"graylog": False, "package_proxy": False}
    cfg = validate(description)
    ip_of = {h.name: str(h.ip) for h in cfg.hosts}
    by_name = {h.name: firewall.ruleset(cfg, h, ip_of) for h in cfg.hosts}
    assert [o.ports for o in by_name["out1"].openings] == ["22"]
    assert [o.ports for o in by_name["repo1"].openings] == ["22", "443"]


def test_kubernetes_api_and_etcd():
    _, rules = rulesets()
    cp = rules["cp1"]
    for source in (IN, W, POD, ADMIN):
        assert admits(cp, source, 6443), source
    assert not admits(cp, OUTSIDE, 6443)
    assert admits(cp, CP, 2379) and not admits(cp, W, 2379) and not admits(cp, ADMIN, 2380)
    # Nodes trust each other and the pods (the CNI's traffic), etcd excepted.
    assert [str(n) for n in rules["w1"].cluster_peers] == [f"{CP}/32", "10.233.64.0/18"]
    assert rules["in1"].cluster_peers == () and rules["in1"].nodeports == ()


def test_nodeports_by_ingress():
    _, rules = rulesets(public_ingress_from=["198.51.100.0/24"])
    public, admin, others = rules["w1"].nodeports
    assert public.admits("198.51.100.4", 30443) and not public.admits(IN, 30443)
    assert admin.admits(IN, 30080) and admin.admits(OUT, 30080) and admin.admits(ADMIN, 30080)
    assert not admin.admits(W, 30080) and not admin.admits(OUTSIDE, 30080)
    assert others.admits(W, 31000, "udp") and others.admits(POD, 31000)
    assert not others.admits(OUTSIDE, 31000)


def test_people_are_confined_on_the_input_host_only():
    cfg, rules = rulesets()
    assert rules["in1"].people_ports == (cfg.cockpit.port, cfg.cockpit.api_port)
    assert all(rules[n].people_ports == () for n in ("out1", "repo1", "cp1", "w1"))
    text = rules["in1"].text(["alice", "admin"], (1000, 60000))
    assert 'meta skuid 1000-60000 meta skuid != { "admin", "alice" } jump people' in text
    assert 'oif "lo" ip daddr 127.0.0.1 tcp dport { 8080, 6443 } accept' in text
    assert "chain output" not in rules["w1"].text([], (1000, 60000))


def test_the_deploys_own_ssh_is_never_locked_out():
    _, rules = rulesets()
    assert not rules["w1"].ssh_refuses(ADMIN) and not rules["w1"].ssh_refuses(IN)
    assert rules["w1"].ssh_refuses(OUTSIDE) and rules["w1"].ssh_refuses("2001:db8::1")
    assert not rules["w1"].ssh_refuses(None)  # not over SSH: nothing to lock out


def test_an_empty_source_list_opens_nothing():
    # No public ingress source: its NodePorts are dropped, never opened to everyone.
    _, rules = rulesets(public_ingress_from=[])
    text = rules["w1"].text([], (1000, 60000))
    assert "th dport { 30090, 30443 } accept" not in text
    assert "th dport { 30090, 30443 } drop" in text


def test_the_file_stamps_its_own_digest():
    _, rules = rulesets()
    text = rules["cp1"].text([], (1000, 60000))
    stamped = firewall.loaded_digest(text)
    assert text == rules["cp1"].text([], (1000, 60000))  # same input, same file
    assert stamped == firewall.digest(text.replace(stamped, ""))
    assert firewall.loaded_digest(rules["w1"].text([], (1000, 60000))) != stamped


@pytest.mark.skipif(not os.path.exists(NFT) and os.environ.get("CI") != "true", reason=NO_NFT)
def test_every_hosts_rules_pass_the_real_nft_parser(tmp_path):
    _, rules = rulesets()
    for name, ruleset in rules.items():
        path = tmp_path / f"{name}.nft"
        # root exists everywhere: nft resolves exempt names when it reads the rules.
        path.write_text(ruleset.text(["root"], (1000, 60000)))
        checked = subprocess.run(
            ["unshare", "--net", NFT, "-c", "-f", str(path)], capture_output=True, text=True
        )
        assert checked.returncode == 0, (name, checked.stderr)
    # And the parser is really reading them: a broken rule is refused.
    path.write_text(path.read_text().replace("policy drop;", "policy maybe;"))
    broken = subprocess.run(["unshare", "--net", NFT, "-c", "-f", str(path)], capture_output=True)
    assert broken.returncode != 0

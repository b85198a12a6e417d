"""firewall: verified on every platform host (the lab tier tries the connections)."""

from __future__ import annotations

import json

from kubi import firewall


def table(node) -> list[dict]:
    listed = json.loads(node.check_output("nft -j list table inet kubi"))
    return [item for item in listed["nftables"] if "metainfo" not in item]


def test_loaded_rules_are_the_files(node):
    rules = node.file(firewall.RULES_FILE)
    assert rules.is_file and rules.user == "root" and rules.mode == 0o644
    # nft's JSON leaves the table's comment out; its text has it on a line of its own.
    listed = node.check_output("nft list table inet kubi").splitlines()
    stamp = f'comment "kubi-firewall {firewall.loaded_digest(rules.content_string)}"'
    assert stamp in [line.strip() for line in listed]


def test_input_refuses_what_is_not_opened(node, spec):
    chains = {item["chain"]["name"]: item["chain"] for item in table(node) if "chain" in item}
    assert chains["input"]["hook"] == "input" and chains["input"]["policy"] == "drop"
    assert ("output" in chains) == ("input" in spec.roles)  # people confined there only
    assert ("nodeports" in chains) == spec.is_kubernetes_node


def test_loaded_at_boot(node):
    assert node.package("nftables").is_installed
    assert node.service(firewall.UNIT).is_enabled

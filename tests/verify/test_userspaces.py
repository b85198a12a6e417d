"""userspaces: each member's kubeconfig on the input host, theirs alone, and what its token
may do through the input host's API stream: its own userspaces, nothing else."""

from __future__ import annotations

import shlex

import pytest

from kubi import userspaces

# Run as the member, as the deploy writes and reads their files: the token never passes
# through root's hands here either.
_ASK = r"""
f="$HOME/.kube/config"
token=$(sed -n "/name: $1@$2\$/,/token:/s/^ *token: //p" "$f" | head -n 1)
ca=$(mktemp); trap 'rm -f "$ca"' EXIT
sed -n 's/^ *certificate-authority-data: //p' "$f" | head -n 1 | base64 -d > "$ca"
curl -s -o /dev/null -w '%{http_code}' --max-time 10 --cacert "$ca" \
  -H "Authorization: Bearer $token" "https://127.0.0.1:$3/api/v1/namespaces/$4/configmaps"
"""


def members(platform):
    found = userspaces.memberships(platform)
    if not found:
        pytest.skip("no userspace declared (userspaces.spaces)")
    return found


def test_each_member_has_a_kubeconfig_of_their_own(node, platform):
    for person, spaces in members(platform).items():
        config = node.file(f"{node.user(person).home}/{userspaces.KUBECONFIG}")
        assert config.is_file and not config.is_symlink, person
        assert (config.user, config.mode) == (person, 0o600), person
        first = node.check_output(f"runuser -u {shlex.quote(person)} -- head -n 1 {config.path}")
        assert first == userspaces.MARKER
        contexts = node.check_output(
            f"runuser -u {shlex.quote(person)} -- sed -n 's/^- name: //p' {config.path}"
        ).split()
        assert set(spaces) <= set(contexts), person


def test_a_members_token_reaches_their_userspace_and_nothing_else(node, platform):
    port = platform.cockpit.api_port
    spaces = [space.name for space in platform.userspaces.spaces]
    for person, theirs in members(platform).items():
        space = theirs[0]
        for namespace, wanted in [(space, "200"), ("kube-system", "403")] + [
            (other, "403") for other in spaces if other not in theirs
        ]:
            answer = node.check_output(
                f"runuser -u {shlex.quote(person)} -- sh -c {shlex.quote(_ASK)} sh "
                f"{shlex.quote(person)} {shlex.quote(space)} {port} {shlex.quote(namespace)}"
            )
            assert answer == wanted, f"{person} in {namespace}: HTTP {answer}"

"""kubernetes: kubeadm, kubelet and kubectl at the platform's version, the deployer's cluster
PKI on the control planes, and a kubeadm configuration kubeadm itself accepts."""

from __future__ import annotations

import pytest

from kubi import kubeadm, kubernetes
from kubi.cluster_pki import CAS
from kubi.secrets import for_platform


def test_packages_at_the_pinned_version(node, platform):
    version = platform.versions.kubernetes
    for package in kubernetes.PACKAGES:
        installed = node.package(package)
        assert installed.is_installed and installed.version.startswith(f"{version}-"), package
    # apt keeps them there: the pin wins over anything newer the channel offers.
    policy = node.check_output("apt-cache policy kubeadm")
    assert f"{version}-" in policy.split("Candidate:")[1].splitlines()[0]


def test_the_repository_key_is_the_pinned_one(node, platform):
    keyring = kubernetes.apt_source(platform).keyring
    shown = node.check_output(
        f"t=$(mktemp -d); GNUPGHOME=$t gpg --batch --with-colons --show-keys {keyring}"
        " | grep '^fpr:' | head -1 | cut -d: -f10; rm -rf $t"
    )
    assert shown.strip() == platform.kubernetes.packages_key


def test_kubeadm_accepts_this_node_s_configuration(node):
    config = node.file(kubeadm.CONFIG)
    assert (config.user, config.group, config.mode) == ("root", "root", 0o600)
    assert node.run(f"kubeadm config validate --config {kubeadm.CONFIG}").rc == 0


@pytest.mark.roles("control_plane")
def test_the_control_planes_hold_the_deployer_s_cas(node, platform):
    secrets = for_platform(platform)
    for base, _, secret in CAS:
        cert = node.file(f"{kubeadm.PKI_DIR}/{base}.crt")
        assert cert.content_string == secrets.read(f"{secret}.crt"), base
        key = node.file(f"{kubeadm.PKI_DIR}/{base}.key")
        assert (key.user, key.mode) == ("root", 0o600), base

"""Secrets are generated once, kept 0600; the platform CA signs verifiable certificates."""

from __future__ import annotations

import stat
import subprocess

import pytest

from kubi.pki import platform_ca, server_certificate
from kubi.secrets import Secrets


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secret_generated_once_with_owner_only_access(tmp_path):
    store = Secrets(tmp_path / "secrets")
    first = store.get("registry-password")
    assert len(first) >= 32
    assert store.get("registry-password") == first
    assert mode(store.path("registry-password")) == 0o600
    assert mode(store.directory) == 0o700
    assert [p.name for p in store.directory.iterdir()] == ["registry-password"]  # no temp file


def test_secret_names_cannot_escape_the_directory(tmp_path):
    import pytest

    with pytest.raises(ValueError):
        Secrets(tmp_path).path("../etc/passwd")


def issue(store, ip):
    return server_certificate(store, "lab", "registry", ["repository.lab.internal"], [ip])


def test_server_certificate_verifies_against_the_ca_and_is_stable(tmp_path):
    store = Secrets(tmp_path)
    cert, key = issue(store, "10.0.0.5")
    ca, _ = platform_ca(store, "lab")
    (tmp_path / "check-ca.pem").write_text(ca)
    (tmp_path / "check.pem").write_text(cert)
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", tmp_path / "check-ca.pem", tmp_path / "check.pem"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", tmp_path / "check.pem"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "DNS:repository.lab.internal" in text and "IP Address:10.0.0.5" in text
    assert mode(store.path("registry.key")) == 0o600 and mode(store.path("ca.key")) == 0o600
    # Same names: the same certificate (a re-run changes nothing on the host).
    assert issue(store, "10.0.0.5") == (
        cert,
        key,
    )
    # New names: a new certificate from the same CA.
    again, _ = issue(store, "10.0.0.6")
    assert again != cert and platform_ca(store, "lab")[0] == ca


@pytest.mark.parametrize("name", ["ca.key\n", "a/b", "../ca.key", "", "-x"])
def test_secret_names_are_matched_in_full(tmp_path, name):
    with pytest.raises(ValueError, match="secret name"):
        Secrets(tmp_path).path(name)


@pytest.mark.parametrize("name", ["site\n", "a b", "../x", "-x"])
def test_nginx_config_names_are_matched_in_full(name):
    from kubi import nginx

    with pytest.raises(ValueError, match="nginx config name"):
        nginx.site(name, None)

"""Secrets are generated once, kept 0600; the platform CA signs verifiable certificates."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

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


DOMAIN = "lab.internal"


def issue(store, *names):
    return server_certificate(store, "lab", DOMAIN, "registry", list(names))


def openssl_verify(tmp_path, ca: str, cert: str) -> subprocess.CompletedProcess:
    (tmp_path / "check-ca.pem").write_text(ca)
    (tmp_path / "check.pem").write_text(cert)
    return subprocess.run(
        ["openssl", "verify", "-CAfile", tmp_path / "check-ca.pem", tmp_path / "check.pem"],
        capture_output=True, text=True,
    )  # fmt: skip


def test_server_certificate_verifies_against_the_ca_and_is_stable(tmp_path):
    store = Secrets(tmp_path)
    cert, key = issue(store, "repository.lab.internal")
    ca, _ = platform_ca(store, "lab", DOMAIN)
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
    assert "DNS:repository.lab.internal" in text and "IP Address" not in text
    assert mode(store.path("registry.key")) == 0o600 and mode(store.path("ca.key")) == 0o600
    # Same names: the same certificate (a re-run changes nothing on the host).
    assert issue(store, "repository.lab.internal") == (cert, key)
    # New names: a new certificate from the same CA.
    again, _ = issue(store, "repository.lab.internal", "repo.lab.internal")
    assert again != cert and platform_ca(store, "lab", DOMAIN)[0] == ca


def _sign(ca_pem: str, ca_key_pem: str, san: x509.GeneralName) -> str:
    """A certificate the CA's key signs for any name: what a stolen key could make."""
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "forged")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    "san",
    [
        x509.DNSName("www.example.com"),
        x509.DNSName("lab.internal.example.com"),  # the domain as a prefix is not inside it
        x509.IPAddress(ipaddress.ip_address("10.0.0.5")),
        x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
    ],
    ids=str,
)
def test_the_ca_vouches_for_nothing_outside_the_domain(tmp_path, san):
    store = Secrets(tmp_path)
    ca, ca_key = platform_ca(store, "lab", DOMAIN)
    inside = openssl_verify(tmp_path, ca, _sign(ca, ca_key, x509.DNSName("x.lab.internal")))
    assert inside.returncode == 0, inside.stderr
    outside = openssl_verify(tmp_path, ca, _sign(ca, ca_key, san))
    assert outside.returncode != 0
    assert "violation" in outside.stdout + outside.stderr  # "permitted/excluded subtree"


def test_names_outside_the_domain_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"not in the platform's domain lab.internal"):
        issue(Secrets(tmp_path), "repository.lab.internal", "repo1")


def test_a_ca_without_constraints_or_for_another_domain_is_replaced(tmp_path):
    store = Secrets(tmp_path)
    old_ca, _ = platform_ca(store, "lab", "old.internal")
    issued, _ = server_certificate(store, "lab", "old.internal", "registry", ["r.old.internal"])
    ca, _ = platform_ca(store, "lab", DOMAIN)
    assert ca != old_ca
    cert, _ = issue(store, "repository.lab.internal")
    assert openssl_verify(tmp_path, ca, cert).returncode == 0
    # Same subject as before, other key: the certificate comes from the new CA.
    assert issue(store, "repository.lab.internal")[0] == cert


@pytest.mark.parametrize("name", ["ca.key\n", "a/b", "../ca.key", "", "-x"])
def test_secret_names_are_matched_in_full(tmp_path, name):
    with pytest.raises(ValueError, match="secret name"):
        Secrets(tmp_path).path(name)


@pytest.mark.parametrize("name", ["site\n", "a b", "../x", "-x"])
def test_nginx_config_names_are_matched_in_full(name):
    from kubi import nginx

    with pytest.raises(ValueError, match="nginx config name"):
        nginx.site(name, None)

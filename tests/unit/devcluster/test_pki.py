"""The PKI made with openssl: a CA that verifies a 127.0.0.1 serving cert and a system:masters client cert."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tokenscale.devcluster import pki


def _openssl(*args: str) -> str:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> pki.Pki:
    return pki.create_pki(tmp_path_factory.mktemp("pki"))


def test_ca_verifies_the_serving_and_admin_certificates(certs: pki.Pki) -> None:
    verified = _openssl("verify", "-CAfile", str(certs.ca_cert), str(certs.serving_cert), str(certs.admin_cert))
    assert verified.count(": OK") == 2


def test_serving_certificate_names_127_0_0_1_only(certs: pki.Pki) -> None:
    names = _openssl("x509", "-in", str(certs.serving_cert), "-noout", "-ext", "subjectAltName")
    assert names.split("\n", 1)[1].strip() == "IP Address:127.0.0.1"


def test_admin_certificate_is_in_the_system_masters_group(certs: pki.Pki) -> None:
    subject = _openssl("x509", "-in", str(certs.admin_cert), "-noout", "-subject", "-nameopt", "sep_multiline")
    assert f"O={pki.ADMIN_GROUP}" in subject
    assert f"CN={pki.ADMIN_USER}" in subject


def test_service_account_public_key_matches_its_private_key(certs: pki.Pki, tmp_path: Path) -> None:
    derived = _openssl("pkey", "-in", str(certs.service_account_key), "-pubout")
    assert derived == certs.service_account_public_key.read_text()


def test_private_keys_are_readable_by_their_owner_only(certs: pki.Pki) -> None:
    assert certs.ca_key.parent.stat().st_mode & 0o077 == 0

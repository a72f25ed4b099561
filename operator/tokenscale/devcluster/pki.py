"""The cluster's PKI, made with the ``openssl`` command line (no Python crypto dependency).

One CA signs a serving certificate (SAN ``IP:127.0.0.1`` only, used by the apiserver, controller-manager,
scheduler and kwok) and an admin client certificate (``O=system:masters``, which RBAC lets do anything). A
separate key pair signs ServiceAccount tokens. All keys are ECDSA P-256: generating them takes milliseconds,
where RSA 2048 would cost a noticeable part of a warm cluster start.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ADMIN_GROUP", "ADMIN_USER", "Pki", "create_pki"]

ADMIN_USER = "tokenscale-admin"
ADMIN_GROUP = "system:masters"
_VALID_DAYS = 3650
_CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc"]
# Extensions per certificate kind; `-config` with this file keeps the host's openssl.cnf out of the result.
_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
"""


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files (keys are PKCS#8)."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    service_account_key: Path
    service_account_public_key: Path

    @classmethod
    def at(cls, directory: Path) -> Pki:
        """The file names `create_pki` uses in ``directory``."""
        return cls(
            ca_cert=directory / "ca.crt",
            ca_key=directory / "ca.key",
            serving_cert=directory / "serving.crt",
            serving_key=directory / "serving.key",
            admin_cert=directory / "admin.crt",
            admin_key=directory / "admin.key",
            service_account_key=directory / "sa.key",
            service_account_public_key=directory / "sa.pub",
        )


def _openssl(*args: str, directory: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=directory, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {done.stderr.strip()}")


def create_pki(directory: Path) -> Pki:
    """Create the CA, certificates and ServiceAccount key pair in ``directory`` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    (directory / "openssl.cnf").write_text(_OPENSSL_CONFIG)
    pki = Pki.at(directory)
    days = ["-days", str(_VALID_DAYS), "-config", "openssl.cnf"]
    _openssl(
        "req", "-x509", *days, "-extensions", "ca", *_CURVE, "-keyout", pki.ca_key.name,
        "-subj", "/CN=tokenscale-dev-ca", "-out", pki.ca_cert.name, directory=directory,
    )  # fmt: skip
    signed_by_ca = ["-CA", pki.ca_cert.name, "-CAkey", pki.ca_key.name]
    _openssl(
        "req", "-x509", *days, "-extensions", "server", *_CURVE, *signed_by_ca, "-keyout", pki.serving_key.name,
        "-subj", "/CN=tokenscale-dev-server", "-out", pki.serving_cert.name, directory=directory,
    )  # fmt: skip
    _openssl(
        "req", "-x509", *days, "-extensions", "client", *_CURVE, *signed_by_ca, "-keyout", pki.admin_key.name,
        "-subj", f"/O={ADMIN_GROUP}/CN={ADMIN_USER}", "-out", pki.admin_cert.name, directory=directory,
    )  # fmt: skip
    _openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-out", pki.service_account_key.name, directory=directory,
    )  # fmt: skip
    _openssl(
        "pkey", "-in", pki.service_account_key.name, "-pubout", "-out", pki.service_account_public_key.name,
        directory=directory,
    )  # fmt: skip
    return pki

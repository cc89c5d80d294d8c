# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A throwaway certificate authority for one test bed: server certificate for 127.0.0.1, one client certificate.

Clients see what they see with a real cluster: https, a CA in the kubeconfig, a bearer token or a client certificate.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(subject, issuer, public_key, signing_key, *, ca=False, server=False, client=False):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        names = [
            x509.DNSName("localhost"),
            x509.DNSName("kubernetes.default.svc"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if client:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def write_certificates(folder: str) -> dict:
    """Create ca.crt, server.crt/.key and client.crt/.key in folder; returns their paths."""
    os.makedirs(folder, exist_ok=True)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "llmops-testbed-ca")])
    ca_cert = _certificate(ca_name, ca_name, ca_key.public_key(), ca_key, ca=True)
    server_key = _key()
    server_cert = _certificate(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
        ca_name,
        server_key.public_key(),
        ca_key,
        server=True,
    )
    client_key = _key()
    client_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
            x509.NameAttribute(NameOID.COMMON_NAME, "testbed-admin"),
        ]
    )
    client_cert = _certificate(client_name, ca_name, client_key.public_key(), ca_key, client=True)
    paths = {}
    for name, data in (
        ("ca.crt", ca_cert.public_bytes(serialization.Encoding.PEM)),
        ("server.crt", server_cert.public_bytes(serialization.Encoding.PEM)),
        ("server.key", _pem_key(server_key)),
        ("client.crt", client_cert.public_bytes(serialization.Encoding.PEM)),
        ("client.key", _pem_key(client_key)),
    ):
        path = os.path.join(folder, name)
        with open(path, "wb") as handle:
            handle.write(data)
        os.chmod(path, 0o600)
        paths[name] = path
    return paths


def server_context(paths: dict) -> ssl.SSLContext:
    """TLS for the API server: client certificates are optional (a bearer token is the other way in)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=paths["ca.crt"])
    context.load_cert_chain(paths["server.crt"], paths["server.key"])
    context.verify_mode = ssl.CERT_OPTIONAL
    return context

"""The TLS file check run before vLLM is started with a certificate (_tls_check), on certificates made here."""

from __future__ import annotations

import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.llmops.ray_vllm.plugins.module_utils._tls_check import certificate_problems

NOW = datetime.datetime.now(datetime.timezone.utc)


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def sign(subject, issuer, public_key, signing_key, ca=False, days=30):
    """A PEM certificate; a server one (not ``ca``) names vllm.example.internal and 127.0.0.1."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        names = [x509.DNSName("vllm.example.internal"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signing_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key, password=None):
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption).decode()


@pytest.fixture(scope="module")
def material():
    ca_key, other_ca_key, server_key, other_key = (ec.generate_private_key(ec.SECP256R1()) for dummy in range(4))
    return {
        "ca": sign("test-ca", "test-ca", ca_key.public_key(), ca_key, ca=True),
        "other_ca": sign("other-ca", "other-ca", other_ca_key.public_key(), other_ca_key, ca=True),
        "cert": sign("vllm", "test-ca", server_key.public_key(), ca_key),
        "key": key_pem(server_key),
        "other_key": key_pem(other_key),
        "encrypted_key": key_pem(server_key, b"secret"),
    }


def test_a_matching_pair_issued_by_the_ca_has_no_problem(material):
    assert certificate_problems(material["cert"], material["key"], material["ca"], now=NOW) == []
    assert certificate_problems(material["cert"], material["key"], now=NOW) == []


def test_the_chain_after_the_certificate_is_accepted(material):
    chain = material["cert"] + material["ca"]
    assert certificate_problems(chain, material["key"], material["ca"], now=NOW) == []


def test_a_key_of_another_certificate_is_named(material):
    problems = certificate_problems(
        material["cert"], material["other_key"], cert_name="vllm_serve_tls_cert_file=/c", key_name="k=/k", now=NOW
    )
    assert len(problems) == 1
    assert "k=/k is not the key of vllm_serve_tls_cert_file=/c (subject CN=vllm)" in problems[0]
    assert "public keys differ" in problems[0]


def test_a_certificate_of_another_ca_is_refused_naming_both(material):
    problems = certificate_problems(material["cert"], material["key"], material["other_ca"], ca_name="ca=/o", now=NOW)
    assert len(problems) == 1
    assert "issuer CN=test-ca" in problems[0] and "not issued by ca=/o (CN=other-ca)" in problems[0]


def test_expired_and_not_yet_valid(material):
    later = NOW + datetime.timedelta(days=31)
    assert "expired on" in certificate_problems(material["cert"], material["key"], now=later)[0]
    earlier = NOW - datetime.timedelta(days=2)
    assert "is not valid before" in certificate_problems(material["cert"], material["key"], now=earlier)[0]


def test_an_encrypted_key_is_refused_with_the_fix(material):
    problems = certificate_problems(material["cert"], material["encrypted_key"], now=NOW)
    assert len(problems) == 1 and "passphrase" in problems[0] and "openssl pkey" in problems[0]


@pytest.mark.parametrize("which", ["cert", "key", "ca"])
def test_text_that_is_not_pem_is_named(material, which):
    given = dict(cert=material["cert"], key=material["key"], ca=material["ca"])
    given[which] = "not a certificate"
    problems = certificate_problems(
        given["cert"], given["key"], given["ca"], cert_name="C", key_name="K", ca_name="A", now=NOW
    )
    expected = {"cert": "C is not a PEM certificate", "key": "K is not a PEM private key", "ca": "A is not a PEM"}
    assert any(problem.startswith(expected[which]) for problem in problems), problems

# Copyright: contributors to llmops.ray_vllm
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils is PRIVATE and should only be used by this collection. Breaking changes can occur any time.

"""Check a server certificate, its key and a CA before a server is started with them (read-only, pure).

What a TLS server needs to start and be trusted: a PEM certificate (optionally followed by its chain), the PEM key
of that certificate without a passphrase (vLLM's server takes none), a validity period that covers now and, when a
CA is given, a certificate the CA issued. Every problem names the source (a variable and its file or Secret), what
was seen and the fix.
"""

from __future__ import annotations

import datetime

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    CRYPTOGRAPHY_ERROR = None
except ImportError as error:  # the filter says what to install
    x509 = serialization = None
    InvalidSignature = UnsupportedAlgorithm = ValueError
    CRYPTOGRAPHY_ERROR = str(error)


def _text(pem):
    return pem.encode("utf-8") if isinstance(pem, str) else bytes(pem or b"")


def _certificates(pem):
    return x509.load_pem_x509_certificates(_text(pem))


def _public_bytes(key):
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _valid_period(certificate):
    return certificate.not_valid_before_utc, certificate.not_valid_after_utc


def _issued_by(chain, authorities):
    """Whether one of ``authorities`` signed a certificate of ``chain`` (the leaf, or the chain's top)."""
    for certificate in chain:
        for authority in authorities:
            try:
                certificate.verify_directly_issued_by(authority)
                return True
            except (ValueError, TypeError, InvalidSignature):  # another issuer, key type or signature
                continue
    return False


def certificate_problems(
    cert_pem, key_pem, ca_pem=None, cert_name="certificate", key_name="key", ca_name="CA", now=None
):
    """Problems of a server certificate and key (and a CA, when given); empty when they will serve.

    ``*_name`` say where each came from in messages (``vllm_serve_tls_cert_file=/etc/llmops/tls/server.crt``).
    """
    if CRYPTOGRAPHY_ERROR:
        return [f"cannot check the TLS files: the Python package 'cryptography' is missing ({CRYPTOGRAPHY_ERROR})"]
    problems = []
    try:
        chain = _certificates(cert_pem)
    except ValueError as error:
        chain = []
        problems.append(
            f"{cert_name} is not a PEM certificate ({error}); expected a file that begins with "
            "'-----BEGIN CERTIFICATE-----' (the server certificate first, then any intermediates)."
        )
    key = None
    try:
        key = serialization.load_pem_private_key(_text(key_pem), password=None)
    except TypeError:
        problems.append(
            f"{key_name} is encrypted with a passphrase, which vLLM's server cannot be given; fix: store it "
            "without one (openssl pkey -in KEY -out KEY.plain) and protect the file by its mode."
        )
    except (ValueError, UnsupportedAlgorithm) as error:
        problems.append(
            f"{key_name} is not a PEM private key ({type(error).__name__}: {error}); expected a file that begins with "
            "'-----BEGIN PRIVATE KEY-----' (or RSA/EC PRIVATE KEY)."
        )
    if not chain:
        return problems
    leaf = chain[0]
    subject = leaf.subject.rfc4514_string() or "(empty subject)"
    if key is not None and _public_bytes(key.public_key()) != _public_bytes(leaf.public_key()):
        problems.append(
            f"{key_name} is not the key of {cert_name} (subject {subject}): their public keys differ. Fix: give the "
            "key the certificate was issued for (both from the same issue, e.g. tls.key beside tls.crt)."
        )
    now = now or datetime.datetime.now(datetime.timezone.utc)
    not_before, not_after = _valid_period(leaf)
    if now < not_before:
        problems.append(
            f"{cert_name} (subject {subject}) is not valid before {not_before.isoformat()}; now is "
            f"{now.isoformat()}. Fix: check the clock, or issue it again."
        )
    if now > not_after:
        problems.append(f"{cert_name} (subject {subject}) expired on {not_after.isoformat()}. Fix: renew it.")
    if ca_pem:
        try:
            authorities = _certificates(ca_pem)
        except ValueError as error:
            problems.append(f"{ca_name} is not a PEM certificate ({error}).")
            return problems
        if not _issued_by(chain, authorities):
            issuers = ", ".join(authority.subject.rfc4514_string() for authority in authorities)
            problems.append(
                f"{cert_name} (subject {subject}, issuer {leaf.issuer.rfc4514_string()}) was not issued by {ca_name} "
                f"({issuers}), so clients trusting that CA refuse it. Fix: give the CA that signed the certificate, "
                "or a certificate that CA signed."
            )
    return problems

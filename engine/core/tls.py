"""TLS for a hub that listens beyond loopback, and the fingerprints nodes pin it by.

Example::

    if needs_tls(config.hub.host):
        identity = hub_identity(config.hub, "data")   # data/secrets/hub_tls.{crt,key} made once
        site = web.TCPSite(runner, host, port, ssl_context=identity.server_context())
        print(identity.fingerprint)                     # "3F:A0:...": read it to remote operators

    fingerprint = peer_fingerprint("192.168.1.10", 8765)  # what a node sees on first contact

A streaming PC has no name a public certificate authority would vouch for,
so the hub makes a self-signed certificate on its first start beyond
loopback (or uses the one `[hub] tls_cert`/`tls_key` name) and nodes trust
it the way SSH trusts a host key: the SHA-256 of the certificate is pinned
on first contact (or given by the operator, read off the streaming PC's
console) and a different certificate later is refused. The fingerprint is
written as browsers and `openssl x509 -fingerprint -sha256` write it:
upper-case hex pairs joined by colons.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import re
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from engine.core.errors import ConfigError
from engine.core.secrets import secret_path, write_private

HUB_CERT_FILE = "hub_tls.crt"
HUB_KEY_FILE = "hub_tls.key"
CERT_VALID_DAYS = 3650
PROBE_TIMEOUT_S = 10.0
_HEX_PAIRS = re.compile(r"[0-9A-F]{64}")


@dataclass(frozen=True)
class HubIdentity:
    """The hub's certificate and key files and the certificate's SHA-256 fingerprint."""

    cert_path: Path
    key_path: Path
    fingerprint: str

    def server_context(self) -> ssl.SSLContext:
        """A server-side TLS context (TLS 1.2 or newer) serving this certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert_path, self.key_path)
        except (ssl.SSLError, OSError) as error:
            raise ConfigError(
                f"the hub cannot use the certificate {self.cert_path} with the key "
                f"{self.key_path}: {error}; give a PEM certificate and its PEM private key"
            ) from None
        return context


def needs_tls(host: str) -> bool:
    """Whether a hub bound to `host` is reachable beyond this machine: then it serves TLS.

    Wildcards ("0.0.0.0", "::", "") listen on every interface; a name other
    than "localhost" may resolve to anything, so only loopback addresses
    and "localhost" are plain.
    """
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return True


def hub_identity(cert_file: str, key_file: str, data_dir: str | Path) -> HubIdentity:
    """The given certificate and key (both or neither), or the self-signed pair under data/secrets.

    The pair is made on first use and reused, so the fingerprint that remote
    nodes pinned stays valid across restarts.
    """
    if bool(cert_file) != bool(key_file):
        given, missing = ("tls_cert", "tls_key") if cert_file else ("tls_key", "tls_cert")
        raise ConfigError(
            f"'hub.{given}' is set but 'hub.{missing}' is not; accepted: both (a PEM "
            "certificate and its PEM private key) or neither (a self-signed certificate is "
            "made under <data_dir>/secrets)"
        )
    if cert_file:
        for key, value in (("tls_cert", cert_file), ("tls_key", key_file)):
            if not Path(value).is_file():
                raise ConfigError(
                    f"'hub.{key}' = {value!r} is not a readable file; accepted: the path of a "
                    "PEM file, or leave tls_cert and tls_key empty for a self-signed certificate"
                )
        cert_path, key_path = Path(cert_file), Path(key_file)
    else:
        cert_path = secret_path(data_dir, HUB_CERT_FILE)
        key_path = secret_path(data_dir, HUB_KEY_FILE)
        if not (cert_path.exists() and key_path.exists()):
            _make_self_signed(cert_path, key_path)
    return HubIdentity(cert_path, key_path, fingerprint_of_pem(cert_path.read_bytes()))


def fingerprint_of_der(der: bytes) -> str:
    """The SHA-256 fingerprint of a DER certificate: "AB:CD:..." (32 pairs)."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def fingerprint_of_pem(pem: bytes) -> str:
    """The SHA-256 fingerprint of the first certificate in a PEM file."""
    try:
        der = ssl.PEM_cert_to_DER_cert(pem.decode("ascii"))
    except (ValueError, UnicodeDecodeError) as error:
        raise ConfigError(f"not a PEM certificate: {error}") from None
    return fingerprint_of_der(der)


def parse_fingerprint(text: str) -> str:
    """A fingerprint as the operator typed it (any case, colons or not) in canonical form.

    ValueError naming the value and what is accepted.
    """
    bare = text.strip().replace(":", "").upper()
    if not _HEX_PAIRS.fullmatch(bare):
        raise ValueError(
            f"fingerprint {text!r} is not accepted; accepted: the 64 hex digits of a SHA-256 "
            "fingerprint, with or without colons (e.g. 3F:A0:...:9C)"
        )
    return ":".join(bare[i : i + 2] for i in range(0, 64, 2))


def fingerprint_bytes(fingerprint: str) -> bytes:
    """The 32 bytes of a canonical fingerprint (what aiohttp.Fingerprint compares)."""
    return bytes.fromhex(fingerprint.replace(":", ""))


def peer_fingerprint(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> str:
    """The fingerprint of the certificate a TLS server at host:port presents (nothing is sent).

    Unverified on purpose: this is how a node learns the certificate to pin
    (trust on first use); the caller compares it with a pinned one.
    """
    return asyncio.run(_peer_fingerprint(host, port, timeout))


async def _peer_fingerprint(host: str, port: int, timeout: float) -> str:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=context, server_hostname=None), timeout
    )
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
    if not der:
        raise ssl.SSLError(f"the server at {host}:{port} presented no certificate")
    return fingerprint_of_der(der)


def _make_self_signed(cert_path: Path, key_path: Path) -> None:
    # Imported here: only a hub beyond loopback needs it, once.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"charles-stream hub on {socket.gethostname()}")]
    )
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_VALID_DAYS))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # The key first: a certificate without its key would be kept and never match.
    write_private(key_path, key_pem.decode("ascii"))
    write_private(cert_path, certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"))


def local_base_url(host: str, port: int, local_port: int) -> str:
    """Where processes on the hub's machine reach it: "http://HOST:PORT", no TLS.

    A hub that serves TLS beyond loopback also listens in plain HTTP on
    127.0.0.1:`local_port` (OBS's browser sources cannot trust a self-signed
    certificate); a loopback hub is plain on its own address.
    """
    if needs_tls(host):
        return f"http://127.0.0.1:{local_port}"
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "[::1]"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"

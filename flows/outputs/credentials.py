"""C2PA content credentials: sign exported synthetic images, read and validate them back.

Every signed image carries a ``c2pa.created`` action with the IPTC digital
source type ``trainedAlgorithmicMedia`` and a ``org.synthgen.provenance``
assertion naming the row it came from. The signing identity is configured
(a PEM chain and key, or a ``module:function`` callback for a KMS/HSM);
with none, a local ES256 chain is generated once per data folder and
reported as untrusted, since no trust list knows its root.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
ASSERTION = "org.synthgen.provenance"
LOSSY = ("jpeg",)  # encodings whose pixels differ from the catalog row's
# Row fields the synthgen assertion carries (plus dataset, version and manifest hash, and the file's encoding).
ASSERTED = ("sample_id", "image_sha256", "model_id", "model_weights_sha256", "seed", "scheduler", "code_commit")


class CredentialsError(ValueError):
    """A signing identity that cannot be used (missing files, bad callback)."""


@dataclass
class Identity:
    """Who signs: the c2pa signer and how audit and the card should describe it."""

    signer: c2pa.Signer
    name: str  # the leaf certificate's subject
    source: str  # 'configured' | 'callback' | 'local (untrusted)'

    @property
    def untrusted(self) -> bool:
        return self.source.startswith("local")

    def describe(self) -> dict:
        return {"signer": self.name, "identity": self.source}


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "synthgen")])


def generate_chain(cn: str = "synthgen local signer") -> tuple[bytes, bytes]:
    """A private root CA and an ES256 leaf signed by it: ``(chain PEM leaf-first, leaf key PEM)``.

    c2pa rejects certificates without SubjectKeyIdentifier and
    AuthorityKeyIdentifier ("the certificate is invalid"), and wants the
    leaf to carry the emailProtection/documentSigning-style EKU.
    """
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder().subject_name(_name(f"{cn} root")).issuer_name(_name(f"{cn} root"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(ca_ski, critical=False)
          .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.subject)
            .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    chain = leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    key = leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    return chain, key


def _subject(chain: bytes) -> str:
    return x509.load_pem_x509_certificates(chain)[0].subject.rfc4514_string()


def _signer(chain: bytes, key: bytes) -> c2pa.Signer:
    return c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, key, None))


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only, from the first byte (whatever the umask).

    The temp file is created with mode 0600 and O_EXCL|O_NOFOLLOW: a file or
    link planted at the temp name is refused rather than written through, and
    no moment exists where the key sits under the umask's wider mode.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)  # os.open's mode passes the umask too: that can only narrow 0600
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def local_identity(root: Path) -> Identity:
    """The data folder's own chain, generated on first use (``<root>/credentials/``)."""
    folder = Path(root) / "credentials"
    chain_path, key_path = folder / "chain.pem", folder / "key.pem"
    if not (chain_path.is_file() and key_path.is_file()):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        chain, key = generate_chain()
        for path, data in ((key_path, key), (chain_path, chain)):  # chain last: its presence means both are whole
            _write_private(path, data)
    if folder.stat().st_mode & 0o077:  # mkdir's mode passes the umask, and a folder from an older synthgen is 0755
        os.chmod(folder, 0o700)
    chain = chain_path.read_bytes()
    return Identity(_signer(chain, key_path.read_bytes()), _subject(chain), "local (untrusted)")


def _load_callback(ref: str) -> Callable[[bytes], bytes]:
    module, _, attr = ref.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise CredentialsError(f"signing callback {ref!r} cannot be imported ({exc}); give module:function") from None
    if not callable(fn):
        raise CredentialsError(f"signing callback {ref!r} is not callable")
    return fn


def signing_identity(root: Path, cert: Path | None = None, key: Path | None = None,
                     callback: str | None = None) -> Identity:
    """The configured identity: chain + key, chain + callback (KMS/HSM signs the bytes), else the local one.

    ``callback`` names ``module:function`` taking the bytes to sign and
    returning an ES256 signature; the chain is still needed, since it goes
    into the manifest.
    """
    if key is not None and callback is not None:
        raise CredentialsError("give a signing key or a signing callback, not both")
    if cert is None:
        if key is not None or callback is not None:
            raise CredentialsError("a signing key or callback needs its certificate chain (sign_cert)")
        return local_identity(root)
    for p in (cert, key):
        if p is not None and not Path(p).is_file():
            raise CredentialsError(f"{p}: no such file (signing identity)")
    chain = Path(cert).read_bytes()
    try:
        subject = _subject(chain)
    except ValueError as exc:
        raise CredentialsError(f"{cert}: not a PEM certificate chain ({exc})") from None
    if callback is not None:
        return Identity(c2pa.Signer.from_callback(_load_callback(callback), c2pa.C2paSigningAlg.ES256,
                                                  chain.decode()), subject, "callback")
    if key is None:
        raise CredentialsError("a certificate chain needs its key (sign_key) or a signing callback")
    return Identity(_signer(chain, Path(key).read_bytes()), subject, "configured")


def manifest_definition(row: dict, dataset: dict, watermark: str | None = None, encoding: dict | None = None) -> dict:
    """The manifest for one synthetic row: the created action and the synthgen assertion.

    ``encoding`` (``{"encoding": "jpeg", "quality": 90}``) says how the file
    was encoded; a lossy one also gets a ``c2pa.transcoded`` action, since its
    pixels are no longer the row's (whose ``image_sha256`` the claim keeps).
    """
    claim = {k: row.get(k) for k in ASSERTED} | dataset | (encoding or {"encoding": "png"})
    if watermark:
        claim["watermark"] = watermark
    actions = [{"action": "c2pa.created", "digitalSourceType": SOURCE_TYPE, "softwareAgent": {"name": "synthgen"}}]
    if claim["encoding"] in LOSSY:
        actions.append({"action": "c2pa.transcoded", "softwareAgent": {"name": "synthgen"},
                        "parameters": {"description": f"catalog PNG re-encoded as {describe_encoding(claim)}"}})
    return {
        "claim_generator_info": [{"name": "synthgen"}],
        "title": f"{row['sample_id']}",
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": actions}},
            {"label": ASSERTION, "data": claim},
        ],
    }


def describe_encoding(claim: dict) -> str:
    """'JPEG q90' / 'PNG' for a synthgen assertion (files signed before it was recorded were PNGs)."""
    enc = claim.get("encoding", "png")
    return f"{enc.upper()} q{claim['quality']}" if claim.get("quality") is not None else enc.upper()


@functools.cache
def _context() -> c2pa.Context:
    # No embedded thumbnail: c2pa's default one adds 100-600 KB to a 256-px image (the image is its own
    # preview); without it a manifest adds ~3.5 KB (bench/bench_export.py).
    return c2pa.Context(settings=c2pa.Settings.from_dict({"builder": {"thumbnail": {"enabled": False}}}))


def sign_bytes(data: bytes, mime: str, definition: dict, identity: Identity) -> bytes:
    """``data`` (an encoded image) with the signed manifest embedded."""
    src, dst = io.BytesIO(data), io.BytesIO()
    with c2pa.Builder(definition, context=_context()) as builder:
        builder.sign(identity.signer, mime, src, dst)
    return dst.getvalue()


@dataclass
class Credential:
    """What a file's manifest says, and whether it validated."""

    valid: bool
    state: str  # c2pa's validation state: Valid / Trusted / Invalid
    signer: str | None
    trusted: bool
    synthetic: bool  # has the created action with trainedAlgorithmicMedia
    claim: dict = field(default_factory=dict)  # the synthgen assertion
    failures: list[str] = field(default_factory=list)  # validation failure codes (e.g. assertion.dataHash.mismatch)


def read_credentials(data: bytes, mime: str) -> Credential | None:
    """Validate a file's C2PA manifest with c2pa's Reader; None when the file has none."""
    try:
        reader = c2pa.Reader.try_create(mime, io.BytesIO(data))
    except c2pa.C2paError as exc:  # a manifest is there but cannot be parsed: tampered or truncated
        return Credential(False, "Invalid", None, False, False, failures=[str(exc)])
    if reader is None:
        return None
    with reader:
        store = json.loads(reader.json())
        state = reader.get_validation_state() or "Invalid"
    active = store.get("manifests", {}).get(store.get("active_manifest"), {})
    statuses = store.get("validation_status") or []
    results = store.get("validation_results", {}).get("activeManifest", {})
    failures = [s.get("code") for s in (results.get("failure") or statuses)]
    # A private CA is expected to be untrusted; that alone is not a failed validation.
    failures = [f for f in failures if f and f != "signingCredential.untrusted"]
    claim, synthetic = {}, False
    for a in active.get("assertions", []):
        if a.get("label") == ASSERTION:
            claim = a.get("data", {})
        elif a.get("label", "").startswith("c2pa.actions"):
            synthetic |= any(x.get("action") == "c2pa.created" and x.get("digitalSourceType") == SOURCE_TYPE
                             for x in a.get("data", {}).get("actions", []))
    sig = active.get("signature_info", {})
    signer = sig.get("common_name") or sig.get("issuer")
    return Credential(not failures and state != "Invalid", state, signer, state == "Trusted", synthetic, claim, failures)

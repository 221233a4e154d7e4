"""The signing keyring in ``LATCH_KEYS_DIR``: generate, load, rotate, publish (JWKS).

On disk: one PKCS8 PEM per private key (mode 0600, refused if looser) and
``keyring.json`` = ``{"version": 1, "keys": [{kid, alg, created_at, retired_at,
file}]}``. A ``kid`` is the RFC 7638 thumbprint of the public key, so a load can
check that the metadata names the key it points at. Writers (first start,
rotate, prune) hold ``flock`` on ``.lock``; readers rely on ``os.replace`` being
atomic. HS256 keeps nothing on disk: its key is the configured secret.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.utils import base64url_encode

from app.clock import Clock
from app.config import ALGORITHMS
from app.errors import ConfigError
from app.secret import Secret

log = logging.getLogger(__name__)

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey

RETIRED_GRACE = 60  # seconds a retired key outlives the last token it can have signed
RELOAD_INTERVAL = 1.0  # keyring.json is stat()ed at most this often
RSA_BITS = 3072
METADATA = "keyring.json"
_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")
_MAX_FILE = 1 << 20
_THUMBPRINT_MEMBERS = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y"),
                       "RSA": ("e", "kty", "n")}


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    alg: str
    private_key: PrivateKey | bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One entry of keyring.json (times are epoch seconds)."""

    kid: str
    alg: str
    created_at: int
    retired_at: int | None
    file: str

    def __post_init__(self) -> None:
        # keyring.json is input: a "file" must not escape keys_dir.
        if not (isinstance(self.kid, str) and _NAME.fullmatch(self.kid)
                and self.alg in ALGORITHMS and isinstance(self.file, str)
                and self.file.endswith(".pem") and _NAME.fullmatch(self.file[:-4])
                and type(self.created_at) is int
                and (self.retired_at is None or type(self.retired_at) is int)):
            raise ValueError("malformed keyring entry")


@dataclass(frozen=True, slots=True)
class _Verifier:
    key: PublicKey
    deadline: float | None  # None while active
    jwk: dict[str, str]


def _generate(alg: str) -> PrivateKey:
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)


def _as_private(alg: str, key: object) -> PrivateKey | None:
    """``key`` if it is a key of the kind ``alg`` needs, else None."""
    if alg == "EdDSA" and isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    if (alg == "ES256" and isinstance(key, ec.EllipticCurvePrivateKey)
            and key.curve.name == "secp256r1"):
        return key
    if alg == "RS256" and isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
        return key
    return None


def public_jwk(alg: str, key: PublicKey) -> dict[str, str]:
    """The public JWK of ``key`` with its RFC 7638 thumbprint as ``kid``."""
    algo: Any = {"EdDSA": OKPAlgorithm, "ES256": ECAlgorithm, "RS256": RSAAlgorithm}[alg]
    jwk: dict[str, str] = algo.to_jwk(key, as_dict=True)
    members = {m: jwk[m] for m in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    kid = base64url_encode(hashlib.sha256(canonical).digest()).decode()
    return {**members, "kid": kid, "alg": alg, "use": "sig"}


def _write_atomic(path: Path, data: bytes) -> None:
    """Write a 0600 file via an O_EXCL temp name and ``os.replace`` (no torn reads)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)  # the umask may only have narrowed it; be exact
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_private(path: Path) -> bytes:
    """Read a key file, refusing symlinks, non-files and group/world access."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise  # the caller decides whether a missing file matters
    except OSError as exc:
        raise ConfigError(f"cannot open private key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"private key file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise ConfigError(
                f"private key file {path} is accessible by group or others "
                f"(mode {stat.S_IMODE(st.st_mode):o}); fix it with: chmod 600 {path}"
            )
        return f.read(_MAX_FILE)


@contextmanager
def _locked(keys_dir: Path) -> Iterator[None]:
    # flock belongs to the open file description, so this also serialises two
    # Keyrings in one process, not only separate processes.
    try:
        fd = os.open(keys_dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot lock LATCH_KEYS_DIR {keys_dir}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    except OSError as exc:  # disk full, read-only mount...: a start-up error, not a crash
        raise ConfigError(f"LATCH_KEYS_DIR {keys_dir}: {exc}") from None
    finally:
        os.close(fd)


def _stamp(st: os.stat_result) -> tuple[int, ...]:
    # A new inode per os.replace, and ns mtimes: a rewrite is always noticed.
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _ensure_dir(keys_dir: Path) -> None:
    try:
        keys_dir.mkdir(mode=0o700, parents=True)
        os.chmod(keys_dir, 0o700)  # mkdir's mode is filtered by the umask
    except FileExistsError:
        if not keys_dir.is_dir():
            raise ConfigError(f"LATCH_KEYS_DIR {keys_dir} is not a directory") from None
    except OSError as exc:
        raise ConfigError(f"cannot create LATCH_KEYS_DIR {keys_dir}: {exc.strerror}") from None


class Keyring:
    """Signing key + every public key whose tokens may still be live."""

    def __init__(self, keys_dir: Path, alg: str, *, access_ttl: int, clock: Clock) -> None:
        self._dir = keys_dir
        self._alg = alg
        self._ttl = access_ttl
        self._clock = clock
        self._signer: SigningKey | None = None
        self._keys: dict[str, _Verifier] = {}
        self._secret: bytes | None = None  # HS256 only
        self._stamp: tuple[int, ...] | None = None
        self._last_check: float | None = None

    @classmethod
    def load_or_create(cls, keys_dir: Path, alg: str, *, secret: Secret[bytes] | None,
                       access_ttl: int, clock: Clock) -> Keyring:
        if alg not in ALGORITHMS:
            raise ConfigError(f"LATCH_JWT_ALG must be one of {', '.join(ALGORITHMS)}")
        ring = cls(keys_dir, alg, access_ttl=access_ttl, clock=clock)
        if alg == "HS256":
            if secret is None or not secret:
                raise ConfigError("LATCH_JWT_ALG=HS256 needs LATCH_JWT_SECRET_FILE")
            raw = secret.reveal()
            kid = hashlib.sha256(b"latch-kid:" + raw).hexdigest()[:16]
            ring._secret = raw
            ring._signer = SigningKey(kid, alg, raw)
            return ring
        _ensure_dir(keys_dir)
        with _locked(keys_dir):
            for pem in sorted(keys_dir.glob("*.pem")):
                _read_private(pem)  # refuse to start on any loose key file
            records, _ = ring._read_records()
            if not any(r.alg == alg and r.retired_at is None for r in records):
                ring._add_key(records)  # first start, or LATCH_JWT_ALG changed
            ring._prune_locked()
            ring._load()
        return ring

    @property
    def alg(self) -> str:
        return self._alg

    @property
    def signing_key(self) -> SigningKey:
        # Pick up a rotation done by another process, so no node keeps signing
        # with a retired key past its grace period.
        self.reload_if_changed()
        assert self._signer is not None
        return self._signer

    def verification_key(self, kid: str) -> PublicKey | bytes | None:
        if self._secret is not None:
            return self._secret if self._signer and kid == self._signer.kid else None
        entry = self._keys.get(kid)
        if entry is None:
            return None
        if entry.deadline is not None and self._clock.now() > entry.deadline:
            del self._keys[kid]
            return None
        return entry.key

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        live = [v for kid, v in list(self._keys.items())
                if self.verification_key(kid) is not None]
        # The active key first, then retired ones, most recently retired first.
        live.sort(key=lambda v: (v.deadline is None, v.deadline or 0.0), reverse=True)
        return {"keys": [dict(v.jwk) for v in live]}

    def rotate(self) -> str:
        if self._secret is not None:
            raise ConfigError("rotate the HS256 secret by replacing LATCH_JWT_SECRET_FILE")
        with _locked(self._dir):
            records, _ = self._read_records()  # from disk: another process may have rotated
            kid = self._add_key(records)
            self._prune_locked()
            self._load()
        log.info("rotated %s signing key, new kid %s", self._alg, kid)
        return kid

    def prune(self) -> list[str]:
        """Forget retired keys whose tokens have all expired; delete their files."""
        if self._secret is not None:
            return []
        with _locked(self._dir):
            pruned = self._prune_locked()
            self._load()
        return pruned

    def reload_if_changed(self) -> bool:
        """Re-read keyring.json if another process changed it (at most once a second)."""
        if self._secret is not None:
            return False
        now = self._clock.monotonic()
        if self._last_check is not None and now - self._last_check < RELOAD_INTERVAL:
            return False
        self._last_check = now
        try:
            st = os.stat(self._dir / METADATA)
        except OSError:
            return False
        if self._stamp == _stamp(st):
            return False
        before = (set(self._keys), self._signer)
        try:
            self._load()
        except (ConfigError, OSError) as exc:
            log.error("keyring reload failed, keeping the loaded keys: %s", exc)
            return False
        return bool(set(self._keys) - before[0]) or self._signer != before[1]

    # --- internals (the _locked ones run under the lock) ----------------------

    def _deadline(self, record: KeyRecord) -> float | None:
        if record.retired_at is None:
            return None
        return record.retired_at + self._ttl + RETIRED_GRACE

    def _read_records(self) -> tuple[list[KeyRecord], tuple[int, ...] | None]:
        path = self._dir / METADATA
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return [], None
        except OSError as exc:
            raise ConfigError(f"cannot open {path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            raw = f.read(_MAX_FILE)
        try:
            records = [KeyRecord(**item) for item in json.loads(raw)["keys"]]
        except (ValueError, TypeError, KeyError):
            raise ConfigError(f"{path} is not a valid keyring file") from None
        return records, _stamp(st)

    def _write_records(self, records: list[KeyRecord]) -> None:
        doc = {"version": 1, "keys": [asdict(r) for r in records]}
        _write_atomic(self._dir / METADATA, json.dumps(doc, indent=2).encode() + b"\n")

    def _add_key(self, records: list[KeyRecord]) -> str:
        """Generate a key for the configured alg and retire every other one."""
        key = _generate(self._alg)
        kid = public_jwk(self._alg, key.public_key())["kid"]
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        _write_atomic(self._dir / f"{kid}.pem", pem)  # file first: metadata never dangles
        now = int(self._clock.now())
        records = [r if r.retired_at is not None else replace(r, retired_at=now)
                   for r in records]
        records.append(KeyRecord(kid, self._alg, now, None, f"{kid}.pem"))
        self._write_records(records)
        log.info("generated %s signing key %s", self._alg, kid)
        return kid

    def _prune_locked(self) -> list[str]:
        records, _ = self._read_records()
        now = self._clock.now()
        dead = [r for r in records if (d := self._deadline(r)) is not None and now > d]
        if dead:
            self._write_records([r for r in records if r not in dead])
            for r in dead:  # after the metadata stops naming them
                (self._dir / r.file).unlink(missing_ok=True)
                self._keys.pop(r.kid, None)
        return [r.kid for r in dead]

    def _load(self) -> None:
        """Replace the in-memory keys with those on disk for the configured alg."""
        records, stamp = self._read_records()
        now = self._clock.now()
        keys: dict[str, _Verifier] = {}
        signer: SigningKey | None = None
        for r in sorted(records, key=lambda r: r.created_at):
            deadline = self._deadline(r)
            if r.alg != self._alg or (deadline is not None and now > deadline):
                continue
            path = self._dir / r.file
            try:
                pem = _read_private(path)
            except FileNotFoundError:
                if r.retired_at is None:
                    raise ConfigError(f"private key file {path} is missing") from None
                log.warning("retired key %s has no file %s; its tokens are refused", r.kid, path)
                continue
            try:
                key = _as_private(self._alg, serialization.load_pem_private_key(pem, None))
            except (ValueError, TypeError, UnsupportedAlgorithm):
                raise ConfigError(f"{path} is not a PEM private key") from None
            if key is None:
                raise ConfigError(f"{path} does not hold a {self._alg} key")
            jwk = public_jwk(self._alg, key.public_key())
            if jwk["kid"] != r.kid:
                raise ConfigError(f"{path} does not match its kid {r.kid} in {METADATA}")
            keys[r.kid] = _Verifier(key.public_key(), deadline, jwk)
            if r.retired_at is None:
                signer = SigningKey(r.kid, self._alg, key)  # the newest active one wins
        if signer is None:
            raise ConfigError(f"{self._dir / METADATA} has no active {self._alg} key")
        self._keys, self._signer, self._stamp = keys, signer, stamp

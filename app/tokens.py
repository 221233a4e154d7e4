"""Issue and verify access tokens (RFC 9068 ``at+jwt``), pure: no web, socket or Redis.

Verification trusts nothing the token says about how to check it: the
algorithm is the configured one, the key is looked up only by ``kid`` in our
own keyring, and a header member we do not issue (``jku``, ``x5u``, ``jwk``,
``x5c``, ``crit``...) is a refusal. Callers see only :class:`TokenExpired` or
:class:`TokenInvalid`.

PyJWT signs. Verifying is the hot path (every handshake and every socket
``refresh``), and PyJWT's ``decode`` adds ~20-50 us of generic work (option
merging, a second header parse, claim validation we redo anyway) on top of
the signature check, so :meth:`TokenService.verify_access` does the JWS steps
itself, narrowly: the token's shape is checked by a regex before anything is
decoded, the header by an allow-list, the signature by PyJWT's own algorithm
object for the pinned ``alg`` (which handles ECDSA's raw ``r||s`` and HMAC's
constant-time compare) or, for Ed25519 keys, by libsodium (PyNaCl), which
verifies in ~39 us where OpenSSL takes ~61 us, and every claim (``iss``, ``aud`` as one exact string,
types, times against the injected clock) is checked here. The tests in
tests/test_tokens.py attack each of these steps.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any, NamedTuple

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from app.clock import Clock
from app.errors import TokenExpired, TokenInvalid
from app.keys import Keyring

JWT_TYP = "at+jwt"
ROLES = frozenset({"user", "admin"})
MAX_TOKEN_CHARS = 4096
REQUIRED_CLAIMS = ("iss", "aud", "sub", "sid", "jti", "iat", "nbf", "exp", "role", "name")
_REQUIRED = frozenset(REQUIRED_CLAIMS)
_HEADER_MEMBERS = frozenset({"alg", "kid", "typ"})  # exactly what issue_access writes
# Three non-empty base64url segments, ASCII only, no padding or whitespace.
_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_KID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_FGP = re.compile(r"[0-9a-f]{64}")
_MAX_DATE = 2**53
_MAX_VERIFIED_HEADERS = 64
# What PyJWT (or a malformed value reaching it) may raise; all mean "invalid".
_DECODE_ERRORS = (ValueError, TypeError, binascii.Error, OverflowError, RecursionError)


@dataclass(frozen=True, slots=True)
class AccessClaims:
    sub: str
    sid: str
    jti: str
    iat: int
    nbf: int
    exp: int
    role: str
    fgp: str | None
    name: str = ""  # the username, so a handshake needs no database read


class IssuedToken(NamedTuple):
    token: str
    claims: AccessClaims


def fingerprint_hash(value: str) -> str:
    """Hex SHA-256 of the fingerprint cookie value (OWASP token sidejacking defence)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def new_fingerprint() -> str:
    """A fresh fingerprint cookie value: 32 random bytes, base64url."""
    return secrets.token_urlsafe(32)


def check_fingerprint(claims: AccessClaims, cookie: str | None) -> None:
    """Refuse a token bound to a fingerprint unless the request carries that cookie."""
    if claims.fgp is None:
        return
    if cookie is None or not hmac.compare_digest(fingerprint_hash(cookie), claims.fgp):
        raise TokenInvalid("Access token is not valid without its fingerprint cookie",
                           reason="fingerprint")


def _b64decode(segment: str) -> bytes:
    """base64url without padding; callers have already checked the alphabet."""
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _invalid(reason: str) -> TokenInvalid:
    # The reason is for logs (``err.data``); the client sees the generic message.
    return TokenInvalid(reason=reason)


class _Ed25519Verifier:
    """Ed25519 signatures checked by libsodium, with one ``VerifyKey`` per keyring key.

    Same interface as PyJWT's algorithm objects (``verify(msg, key, sig) -> bool``);
    keys that are not Ed25519 public keys (Ed448) go to PyJWT's ``fallback``.
    libsodium accepts only canonical RFC 8032 signatures (S < L, no small-order
    points), as strict as OpenSSL or stricter.
    """

    def __init__(self, fallback: Any) -> None:
        self._fallback = fallback
        self._keys: dict[int, tuple[Ed25519PublicKey, VerifyKey]] = {}

    def verify(self, msg: bytes, key: Any, sig: bytes) -> bool:
        if not isinstance(key, Ed25519PublicKey):
            return bool(self._fallback.verify(msg, key, sig))
        cached = self._keys.get(id(key))
        if cached is None or cached[0] is not key:
            if len(self._keys) >= 64:  # rotations over a long uptime: start over
                self._keys.clear()
            cached = self._keys[id(key)] = (key, VerifyKey(
                key.public_bytes(Encoding.Raw, PublicFormat.Raw)))
        if len(sig) != 64:
            return False
        try:
            cached[1].verify(msg, sig)
        except BadSignatureError:
            return False
        return True


class TokenService:
    """Signs access tokens with the keyring's active key and verifies them."""

    def __init__(self, keyring: Keyring, *, issuer: str, audience: str, access_ttl: int,
                 clock: Clock, leeway: int = 0) -> None:
        self._keyring = keyring
        self._alg = keyring.alg
        self._algorithms = [keyring.alg]  # pinned: exactly one entry, never from the token
        self._issuer = issuer
        self._audience = audience
        self._ttl = access_ttl
        self._clock = clock
        self._leeway = leeway
        self._jwt = jwt.PyJWT()  # signing only; see verify_access
        self._verified_headers: dict[str, str] = {}  # header segment -> kid
        # The algorithm object for the pinned alg: its verify() takes the key
        # objects the keyring holds (bytes for HS256).
        self._verifier = jwt.algorithms.get_default_algorithms()[keyring.alg]
        if keyring.alg == "EdDSA":
            self._verifier = _Ed25519Verifier(self._verifier)

    def issue_access(self, *, user_id: str, session_id: str, role: str,
                     fingerprint_hash: str | None = None, username: str = "") -> IssuedToken:
        if not (isinstance(user_id, str) and user_id and isinstance(session_id, str)
                and session_id):
            raise ValueError("user_id and session_id must be non-empty strings")
        if not isinstance(role, str) or role not in ROLES:
            raise ValueError(f"role must be one of {sorted(ROLES)}")
        if fingerprint_hash is not None and not _FGP.fullmatch(fingerprint_hash):
            raise ValueError("fingerprint_hash must be a hex SHA-256 (use fingerprint_hash())")
        signer = self._keyring.signing_key
        now = int(self._clock.now())
        claims = AccessClaims(sub=user_id, sid=session_id, jti=secrets.token_urlsafe(16),
                              iat=now, nbf=now, exp=now + self._ttl, role=role,
                              fgp=fingerprint_hash, name=username or user_id)
        payload: dict[str, Any] = {
            "iss": self._issuer, "aud": self._audience, "sub": claims.sub, "sid": claims.sid,
            "jti": claims.jti, "iat": now, "nbf": now, "exp": claims.exp, "role": role,
            "name": claims.name,
        }
        if fingerprint_hash is not None:
            payload["fgp"] = fingerprint_hash
        token = self._jwt.encode(payload, signer.private_key, algorithm=signer.alg,
                                 headers={"kid": signer.kid, "typ": JWT_TYP})
        return IssuedToken(token, claims)

    def verify_access(self, token: str) -> AccessClaims:
        """Claims of a valid token; else :class:`TokenExpired` or :class:`TokenInvalid`."""
        # Size and shape first, before any decoding work an attacker could inflate.
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
            raise _invalid("malformed")
        if _SHAPE.fullmatch(token) is None:
            raise _invalid("malformed")
        header_b64 = token[: token.index(".")]
        kid = self._verified_headers.get(header_b64) or self._check_header(header_b64)
        key = self._keyring.verification_key(kid)
        if key is None and self._keyring.reload_if_changed():
            key = self._keyring.verification_key(kid)  # rotated by another process
        if key is None:
            raise _invalid("unknown_kid")
        _, payload_b64, signature_b64 = token.split(".")
        signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
        try:
            signature = _b64decode(signature_b64)
            # One signature, one spelling: base64url has spare bits in its last
            # character, and a token that differs only there must not verify.
            valid = (_b64encode(signature) == signature_b64
                     and self._verifier.verify(signing_input, key, signature))
        except _DECODE_ERRORS:
            valid = False
        if not valid:
            raise _invalid("signature")
        if header_b64 not in self._verified_headers:
            # Signed by our key, so one of the few headers we write (one per key):
            # the next token with this exact header skips parsing it again.
            if len(self._verified_headers) >= _MAX_VERIFIED_HEADERS:
                self._verified_headers.clear()  # many rotations over a long uptime
            self._verified_headers[header_b64] = kid
        try:
            payload = json.loads(_b64decode(payload_b64))
        except _DECODE_ERRORS:
            raise _invalid("malformed_payload") from None
        if not isinstance(payload, dict):
            raise _invalid("malformed_payload")
        return self._claims(payload)

    def _check_header(self, segment: str) -> str:
        """Return the ``kid`` of a header we could have written ourselves."""
        try:
            header = json.loads(_b64decode(segment))
        except _DECODE_ERRORS:
            raise _invalid("malformed_header") from None
        if not isinstance(header, dict):
            raise _invalid("malformed_header")
        # An allow-list: jku/x5u/jwk/x5c/x5t would let the token pick its key,
        # and a crit extension we do not implement must be refused (RFC 7515 §4.1.11).
        if not header.keys() <= _HEADER_MEMBERS:
            raise _invalid("header_not_allowed")
        if header.get("typ") != JWT_TYP:
            raise _invalid("wrong_typ")
        if header.get("alg") != self._alg:
            raise _invalid("wrong_alg")
        kid = header.get("kid")
        if not isinstance(kid, str) or _KID.fullmatch(kid) is None:
            raise _invalid("missing_kid")
        return kid

    def _claims(self, p: dict[str, Any]) -> AccessClaims:
        # Every claim we issue must be present (``fgp`` is the one optional claim).
        if not p.keys() >= _REQUIRED:
            raise _invalid("claim_missing")
        # Exact strings: an ``aud`` list, or an issuer of another type, is refused.
        if p["iss"] != self._issuer or type(p["iss"]) is not str:
            raise _invalid("claim_iss")
        if p["aud"] != self._audience or type(p["aud"]) is not str:
            raise _invalid("claim_aud")
        sub, sid, jti, role, name = p["sub"], p["sid"], p["jti"], p["role"], p["name"]
        if not isinstance(name, str) or not name or len(name) > 256:
            raise _invalid("claim_name")
        iat, nbf, exp, fgp = p["iat"], p["nbf"], p["exp"], p.get("fgp")
        if not all(isinstance(v, str) and v for v in (sub, sid, jti)):
            raise _invalid("claim_type")
        if not isinstance(role, str) or role not in ROLES:
            raise _invalid("claim_role")
        # NumericDate as we write it: a plain int (not bool or float) in JSON's safe range.
        if not all(type(v) is int and 0 <= v < _MAX_DATE for v in (iat, nbf, exp)):
            raise _invalid("claim_type")
        if fgp is not None and not (isinstance(fgp, str) and _FGP.fullmatch(fgp)):
            raise _invalid("claim_type")
        now = self._clock.now()
        if nbf > now + self._leeway or iat > now + self._leeway:
            raise _invalid("not_yet_valid")
        if exp <= now - self._leeway:
            raise TokenExpired()
        return AccessClaims(sub=sub, sid=sid, jti=jti, iat=iat, nbf=nbf, exp=exp, role=role,
                            fgp=fgp, name=name)

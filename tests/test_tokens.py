"""Access tokens: round trips, and one test per attack the verifier must refuse.

Attack tokens are built by hand (``craft``) and signed with the real key, so
that the one thing wrong with each is the thing under test;
``test_handcrafted_token_is_accepted`` proves the crafting itself is sound.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import get_default_algorithms

from app.clock import FrozenClock
from app.errors import TokenExpired, TokenInvalid
from app.keys import RETIRED_GRACE, Keyring
from app.secret import Secret
from app.tokens import (
    MAX_TOKEN_CHARS,
    REQUIRED_CLAIMS,
    AccessClaims,
    TokenService,
    check_fingerprint,
    fingerprint_hash,
    new_fingerprint,
)

ALGS = ("EdDSA", "ES256", "RS256", "HS256")
ASYMMETRIC = ("EdDSA", "ES256", "RS256")
TTL = 900
ISS = "https://latch.test"
AUD = "latch-api"
SECRET = hashlib.sha512(b"latch test secret").digest()

Signer = Callable[[bytes], bytes]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def craft(header: dict[str, Any], payload: dict[str, Any], sign: Signer) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def signer_of(ring: Keyring, alg: str | None = None) -> Signer:
    """Sign with the ring's real private key (optionally under another alg name)."""
    key = ring.signing_key
    algorithm = get_default_algorithms()[alg or key.alg]
    prepared = algorithm.prepare_key(key.private_key)
    return lambda data: algorithm.sign(data, prepared)


def make_ring(keys_dir: Path, alg: str, clock: FrozenClock, secret: bytes = SECRET) -> Keyring:
    return Keyring.load_or_create(keys_dir, alg, secret=Secret(secret) if alg == "HS256" else None,
                                  access_ttl=TTL, clock=clock)


def make_service(ring: Keyring, clock: FrozenClock, *, issuer: str = ISS, audience: str = AUD,
                 leeway: int = 0) -> TokenService:
    return TokenService(ring, issuer=issuer, audience=audience, access_ttl=TTL, clock=clock,
                        leeway=leeway)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture(params=ALGS)
def alg(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture(scope="session")
def key_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One generated keys dir per alg, copied by each test (RSA keygen is slow)."""
    dirs = {alg: tmp_path_factory.mktemp(alg) / "keys" for alg in ASYMMETRIC}
    for alg, path in dirs.items():
        make_ring(path, alg, FrozenClock())
    return dirs


@pytest.fixture
def ring(tmp_path: Path, alg: str, clock: FrozenClock, key_dirs: dict[str, Path]) -> Keyring:
    if alg in key_dirs:
        shutil.copytree(key_dirs[alg], tmp_path / "keys")  # keeps the 0600 modes
    return make_ring(tmp_path / "keys", alg, clock)


@pytest.fixture
def service(ring: Keyring, clock: FrozenClock) -> TokenService:
    return make_service(ring, clock)


def header_for(ring: Keyring, **changes: Any) -> dict[str, Any]:
    header = {"alg": ring.alg, "kid": ring.signing_key.kid, "typ": "at+jwt", **changes}
    return {k: v for k, v in header.items() if v is not None}


def payload_for(clock: FrozenClock, **changes: Any) -> dict[str, Any]:
    now = int(clock.now())
    payload = {"iss": ISS, "aud": AUD, "sub": "42", "sid": "sess-1", "jti": "jti-1",
               "iat": now, "nbf": now, "exp": now + TTL, "role": "user", "name": "alice", **changes}
    return {k: v for k, v in payload.items() if v is not None}


def refused(service: TokenService, token: Any) -> TokenInvalid:
    """Assert the token is refused as invalid (not expired, not any other exception)."""
    with pytest.raises(TokenInvalid) as err:
        service.verify_access(token)
    assert type(err.value) is TokenInvalid
    assert err.value.code == "token_invalid"
    return err.value


# --- round trips ---------------------------------------------------------------------


def test_round_trip(service: TokenService, ring: Keyring, alg: str, clock: FrozenClock) -> None:
    issued = service.issue_access(user_id="42", session_id="sess-1", role="admin")
    assert service.verify_access(issued.token) == issued.claims

    header = jwt.get_unverified_header(issued.token)
    assert header == {"alg": alg, "kid": ring.signing_key.kid, "typ": "at+jwt"}
    body = json.loads(unb64(issued.token.split(".")[1]))
    now = int(clock.now())
    assert body == {"iss": ISS, "aud": AUD, "sub": "42", "sid": "sess-1",
                    "jti": issued.claims.jti, "iat": now, "nbf": now, "exp": now + TTL,
                    "role": "admin", "name": "42"}


def test_every_token_gets_a_fresh_jti(service: TokenService) -> None:
    jtis = {service.issue_access(user_id="1", session_id="s", role="user").claims.jti
            for _ in range(50)}
    assert len(jtis) == 50


def test_handcrafted_token_is_accepted(service: TokenService, ring: Keyring,
                                       clock: FrozenClock) -> None:
    token = craft(header_for(ring), payload_for(clock), signer_of(ring))
    claims = service.verify_access(token)
    assert (claims.sub, claims.sid, claims.role, claims.fgp) == ("42", "sess-1", "user", None)


def test_issue_rejects_bad_arguments(service: TokenService) -> None:
    with pytest.raises(ValueError, match="role"):
        service.issue_access(user_id="1", session_id="s", role="root")
    with pytest.raises(ValueError, match="non-empty"):
        service.issue_access(user_id="", session_id="s", role="user")
    with pytest.raises(ValueError, match="fingerprint"):
        service.issue_access(user_id="1", session_id="s", role="user",
                             fingerprint_hash="raw-cookie-value")


# --- fingerprint (sidejacking defence) ---------------------------------------------


def test_fingerprint_helpers() -> None:
    assert fingerprint_hash("abc") == hashlib.sha256(b"abc").hexdigest()
    value = new_fingerprint()
    assert len(unb64(value)) == 32
    assert value != new_fingerprint()


def test_fingerprinted_token_needs_its_cookie(service: TokenService) -> None:
    cookie = new_fingerprint()
    issued = service.issue_access(user_id="7", session_id="s", role="user",
                                  fingerprint_hash=fingerprint_hash(cookie))
    claims = service.verify_access(issued.token)
    assert claims.fgp == fingerprint_hash(cookie)

    check_fingerprint(claims, cookie)
    for wrong in (None, "", new_fingerprint(), fingerprint_hash(cookie)):
        with pytest.raises(TokenInvalid):
            check_fingerprint(claims, wrong)


def test_token_without_fingerprint_needs_no_cookie(service: TokenService) -> None:
    claims = service.verify_access(service.issue_access(user_id="7", session_id="s",
                                                        role="user").token)
    check_fingerprint(claims, None)


# --- signature and algorithm attacks ---------------------------------------------------


@pytest.mark.parametrize("none", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", ["", "c2ln"])
def test_alg_none_refused(service: TokenService, ring: Keyring, clock: FrozenClock,
                          none: str, signature: str) -> None:
    token = craft(header_for(ring, alg=none), payload_for(clock), lambda _: b"")
    refused(service, token[: token.rindex(".") + 1] + signature)


@pytest.mark.parametrize("alg", ASYMMETRIC)
@pytest.mark.parametrize("form", ["pem", "pem-pkcs1", "der", "jwk"])
def test_public_key_as_hmac_secret_refused(service: TokenService, ring: Keyring,
                                           clock: FrozenClock, alg: str, form: str) -> None:
    # The classic key-confusion attack: everything needed is public.
    public = ring.signing_key.private_key.public_key()  # type: ignore[union-attr]
    pkcs1 = alg == "RS256" and form == "pem-pkcs1"
    secret = {
        "pem": lambda: public.public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo),
        "pem-pkcs1": lambda: public.public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.PKCS1 if pkcs1
            else serialization.PublicFormat.SubjectPublicKeyInfo),
        "der": lambda: public.public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo),
        "jwk": lambda: json.dumps(ring.jwks()["keys"][0]).encode(),
    }[form]()
    for hs in ("HS256", "HS384", "HS512"):
        digest = getattr(hashlib, f"sha{hs[2:]}")
        token = craft(header_for(ring, alg=hs), payload_for(clock),
                      lambda data, d=digest: hmac.new(secret, data, d).digest())
        refused(service, token)


@pytest.mark.parametrize("alg", ["RS256"])
@pytest.mark.parametrize("other", ["PS256", "RS384", "RS512"])
def test_rsa_key_under_another_rsa_alg_refused(service: TokenService, ring: Keyring,
                                                clock: FrozenClock, other: str) -> None:
    # A signature that is genuinely valid for the key, under an alg we did not pin.
    token = craft(header_for(ring, alg=other), payload_for(clock), signer_of(ring, other))
    refused(service, token)


def test_token_for_another_alg_refused(tmp_path: Path, clock: FrozenClock) -> None:
    es = make_service(make_ring(tmp_path / "es", "ES256", clock), clock)
    ed = make_service(make_ring(tmp_path / "ed", "EdDSA", clock), clock)
    refused(ed, es.issue_access(user_id="1", session_id="s", role="user").token)


@pytest.mark.parametrize("claim", ["role", "sub", "sid", "exp"])
def test_tampered_payload_refused(service: TokenService, clock: FrozenClock,
                                  claim: str) -> None:
    token = service.issue_access(user_id="42", session_id="s", role="user").token
    header, payload, signature = token.split(".")
    body = json.loads(unb64(payload))
    body[claim] = {"role": "admin", "sub": "1", "sid": "other", "exp": body["exp"] + 86400}[claim]
    refused(service, f"{header}.{b64(json.dumps(body).encode())}.{signature}")


def test_tampered_signature_refused(service: TokenService) -> None:
    token = service.issue_access(user_id="42", session_id="s", role="user").token
    head, _, signature = token.rpartition(".")
    raw = bytearray(unb64(signature))
    raw[0] ^= 1
    refused(service, f"{head}.{b64(bytes(raw))}")
    refused(service, f"{head}.{b64(bytes(raw[:-1]))}")


# --- key selection --------------------------------------------------------------------


def test_unknown_kid_refused(tmp_path: Path, service: TokenService, alg: str,
                             clock: FrozenClock) -> None:
    stranger = make_ring(tmp_path / "stranger", alg, clock, secret=hashlib.sha512(b"x").digest())
    token = make_service(stranger, clock).issue_access(user_id="1", session_id="s",
                                                        role="admin").token
    assert refused(service, token).data["reason"] == "unknown_kid"


def test_our_kid_with_a_strangers_signature_refused(tmp_path: Path, service: TokenService,
                                                    ring: Keyring, alg: str,
                                                    clock: FrozenClock) -> None:
    stranger = make_ring(tmp_path / "stranger", alg, clock, secret=hashlib.sha512(b"x").digest())
    refused(service, craft(header_for(ring), payload_for(clock), signer_of(stranger)))


@pytest.mark.parametrize("kid", [None, "", 7, ["k"], {"k": 1}, "../../etc/passwd", "k" * 200,
                                 "kid with spaces"])
def test_missing_or_malformed_kid_refused(service: TokenService, ring: Keyring,
                                          clock: FrozenClock, kid: Any) -> None:
    header = header_for(ring)
    if kid is None:
        del header["kid"]
    else:
        header["kid"] = kid
    refused(service, craft(header, payload_for(clock), signer_of(ring)))


@pytest.mark.parametrize("member", ["jku", "x5u", "jwk", "x5c", "x5t", "x5t#S256", "cty", "zip",
                                    "b64", "iss"])
def test_header_that_could_choose_a_key_refused(service: TokenService, ring: Keyring,
                                                clock: FrozenClock, member: str) -> None:
    value: Any = {
        "jku": "https://attacker.example/jwks.json",
        "x5u": "https://attacker.example/cert.pem",
        "jwk": {"kty": "OKP", "crv": "Ed25519", "x": b64(bytes(32))},
        "x5c": [b64(b"not a cert")],
        "x5t": b64(bytes(20)),
        "x5t#S256": b64(bytes(32)),
        "cty": "JWT",
        "zip": "DEF",
        "b64": True,
        "iss": ISS,
    }[member]
    token = craft(header_for(ring, **{member: value}), payload_for(clock), signer_of(ring))
    assert refused(service, token).data["reason"] == "header_not_allowed"


@pytest.mark.parametrize("crit", [["exp"], ["b64"], [], "exp"])
def test_crit_header_refused(service: TokenService, ring: Keyring, clock: FrozenClock,
                             crit: Any) -> None:
    header = header_for(ring, crit=crit, exp=1, b64=True)
    refused(service, craft(header, payload_for(clock), signer_of(ring)))


@pytest.mark.parametrize("typ", [None, "JWT", "jwt", "AT+JWT", "at+jwt ", "JOSE", 1])
def test_wrong_typ_refused(service: TokenService, ring: Keyring, clock: FrozenClock,
                           typ: Any) -> None:
    header = header_for(ring)
    if typ is None:
        del header["typ"]
    else:
        header["typ"] = typ
    refused(service, craft(header, payload_for(clock), signer_of(ring)))


# --- claims -----------------------------------------------------------------------------


def test_wrong_issuer_refused(service: TokenService, ring: Keyring, clock: FrozenClock) -> None:
    other = make_service(ring, clock, issuer="https://evil.test")
    refused(service, other.issue_access(user_id="1", session_id="s", role="user").token)


def test_wrong_audience_refused(service: TokenService, ring: Keyring, clock: FrozenClock) -> None:
    other = make_service(ring, clock, audience="another-api")
    refused(service, other.issue_access(user_id="1", session_id="s", role="user").token)


@pytest.mark.parametrize("aud", [[AUD], [AUD, "another-api"], "", [], None])
def test_audience_must_be_exactly_ours(service: TokenService, ring: Keyring,
                                       clock: FrozenClock, aud: Any) -> None:
    payload = payload_for(clock)
    payload["aud"] = aud
    refused(service, craft(header_for(ring), payload, signer_of(ring)))


@pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
@pytest.mark.parametrize("how", ["absent", "null"])
def test_each_required_claim_is_required(service: TokenService, ring: Keyring,
                                         clock: FrozenClock, claim: str, how: str) -> None:
    payload = payload_for(clock)
    if how == "absent":
        del payload[claim]
    else:
        payload[claim] = None
    refused(service, craft(header_for(ring), payload, signer_of(ring)))


@pytest.mark.parametrize(("claim", "value"), [
    ("sub", 42), ("sub", ""), ("sid", 7), ("sid", ["s"]), ("jti", {"a": 1}), ("jti", ""),
    ("iat", "1800000000"), ("iat", 1800000000.5), ("nbf", True), ("exp", 1800000900.0),
    ("exp", "never"), ("exp", 10**400), ("exp", 2**53), ("iat", -1), ("role", "root"),
    ("role", "Admin"), ("role", ["admin"]),
    ("role", {"admin": True}), ("role", 1), ("fgp", "not-a-hash"), ("fgp", 5),
    ("fgp", "A" * 64), ("iss", 1), ("iss", [ISS]),
])
def test_claim_types_are_checked(service: TokenService, ring: Keyring, clock: FrozenClock,
                                 claim: str, value: Any) -> None:
    payload = payload_for(clock)
    payload[claim] = value
    refused(service, craft(header_for(ring), payload, signer_of(ring)))


# --- time ----------------------------------------------------------------------------------


def test_expiry_follows_the_injected_clock(service: TokenService, clock: FrozenClock) -> None:
    token = service.issue_access(user_id="1", session_id="s", role="user").token
    clock.advance(TTL - 1)
    assert service.verify_access(token).sub == "1"
    clock.advance(1)
    with pytest.raises(TokenExpired) as err:
        service.verify_access(token)
    assert err.value.code == "token_expired"


def test_leeway_extends_expiry(ring: Keyring, clock: FrozenClock) -> None:
    service = make_service(ring, clock, leeway=30)
    token = service.issue_access(user_id="1", session_id="s", role="user").token
    clock.advance(TTL + 29)
    assert service.verify_access(token).sub == "1"
    clock.advance(1)
    with pytest.raises(TokenExpired):
        service.verify_access(token)


def test_expired_forgery_is_invalid_not_expired(service: TokenService, clock: FrozenClock) -> None:
    # "Expired" must only ever be said of a token we really signed.
    token = service.issue_access(user_id="1", session_id="s", role="user").token
    header, payload, _ = token.split(".")
    clock.advance(TTL * 2)
    refused(service, f"{header}.{payload}.{b64(bytes(64))}")


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_not_yet_valid_refused(service: TokenService, ring: Keyring, clock: FrozenClock,
                               claim: str) -> None:
    payload = payload_for(clock, **{claim: int(clock.now()) + 60})
    assert refused(service, craft(header_for(ring), payload, signer_of(ring))).data["reason"] \
        == "not_yet_valid"
    clock.advance(60)
    assert service.verify_access(craft(header_for(ring), payload, signer_of(ring))).sub == "42"


# --- malformed input ---------------------------------------------------------------------


@pytest.mark.parametrize("token", [
    "", " ", "a", "a.b", "a.b.c", "...", "a..c", ".b.c", "a.b.c.d", "é", "héllo.wörld.x",
    "\x00.\x00.\x00", "a" * 10 * 1024, ".".join(["a" * 3400] * 3), "Bearer a.b.c",
    "eyJhbGciOiJub25lIn0.e30.", "🔑.🔑.🔑", None, 42, b"a.b.c", ["a", "b", "c"],
])
def test_garbage_is_invalid(service: TokenService, token: Any) -> None:
    refused(service, token)


def test_whitespace_or_padding_around_a_good_token_refused(service: TokenService) -> None:
    token = service.issue_access(user_id="1", session_id="s", role="user").token
    assert service.verify_access(token).sub == "1"
    head, _, sig = token.rpartition(".")
    for variant in (f" {token}", f"{token}\n", f"{token}=", f"{head}.{sig}==", token + "\u00e9"):
        refused(service, variant)


def test_size_limit_applies_before_parsing(service: TokenService, ring: Keyring,
                                           clock: FrozenClock) -> None:
    sign = signer_of(ring)
    fake_sig = b"\x00" * len(sign(b"x"))

    def sized(pad: int, signer: Signer) -> str:
        return craft(header_for(ring), payload_for(clock, pad="p" * pad), signer)

    pad = 2000
    while len(sized(pad + 1, lambda _: fake_sig)) <= MAX_TOKEN_CHARS:
        pad += 1
    largest = sized(pad, sign)
    assert len(largest) <= MAX_TOKEN_CHARS
    assert service.verify_access(largest).sub == "42"
    oversized = sized(pad + 1, sign)
    assert len(oversized) > MAX_TOKEN_CHARS
    assert refused(service, oversized).data["reason"] == "malformed"


def test_every_single_character_change_is_refused(service: TokenService) -> None:
    token = service.issue_access(user_id="1", session_id="s", role="user").token
    alphabet = "AB_-.9="
    for i, ch in enumerate(token):
        for new in alphabet:
            if new != ch:
                mutated = token[:i] + new + token[i + 1:]
                with pytest.raises(TokenInvalid):
                    service.verify_access(mutated)
    for cut in range(len(token)):
        refused(service, token[:cut])


def test_signature_with_spare_bits_set_is_refused(service: TokenService) -> None:
    """base64url's last character carries spare bits: the same signature bytes can be
    spelled more than one way, and only the canonical spelling may verify."""
    token = service.issue_access(user_id="1", session_id="s", role="user").token
    head, _, sig = token.rpartition(".")
    raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    spare = [f"{head}.{sig[:-1]}{ch}" for ch in alphabet if ch != sig[-1]
             and base64.urlsafe_b64decode(sig[:-1] + ch + "=" * (-len(sig) % 4)) == raw]
    if len(raw) % 3 == 0:  # RSA-3072: whole base64 groups, no spare bits to set
        assert not spare
        return
    assert spare, "expected other spellings of the same signature"
    for variant in spare:
        refused(service, variant)


def test_libsodium_and_openssl_agree_on_ed25519_signatures() -> None:
    """The EdDSA hot path verifies with libsodium; it must accept and refuse exactly what
    OpenSSL (PyJWT's algorithm object) does, on good, tampered and malleated signatures."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from app.tokens import _Ed25519Verifier

    openssl = jwt.algorithms.get_default_algorithms()["EdDSA"]
    sodium = _Ed25519Verifier(openssl)
    order = 2**252 + 27742317777372353535851937790883648493  # the group order L
    for n in range(20):
        private = Ed25519PrivateKey.generate()
        key = private.public_key()
        msg = f"header.payload-{n}".encode()
        sig = private.sign(msg)
        s_plus_l = sig[:32] + (int.from_bytes(sig[32:], "little") + order).to_bytes(32, "little")
        cases = [
            (sig, msg, True),
            (sig, msg + b"x", False),
            (bytes([sig[0] ^ 1]) + sig[1:], msg, False),
            (sig[:63] + bytes([sig[63] ^ 0x80]), msg, False),
            (s_plus_l, msg, False),  # same signature, non-canonical S
            (bytes(64), msg, False),
            (sig[:63], msg, False),
            (sig + b"\0", msg, False),
        ]
        other = Ed25519PrivateKey.generate().public_key()
        for candidate, message, expected in cases:
            assert sodium.verify(message, key, candidate) is expected
            assert bool(openssl.verify(message, key, candidate)) is expected
            assert sodium.verify(message, other, candidate) is False


# --- rotation (tokens across keys) ---------------------------------------------------------


@pytest.mark.parametrize("alg", ASYMMETRIC)
def test_rotation_keeps_old_tokens_until_their_key_retires(
    tmp_path: Path, clock: FrozenClock, alg: str
) -> None:
    ring = make_ring(tmp_path, alg, clock)
    # A huge leeway keeps the old token from expiring, so only key retirement can end it.
    service = make_service(ring, clock, leeway=10 * TTL)
    old_kid = ring.signing_key.kid
    old = service.issue_access(user_id="1", session_id="s", role="user")

    clock.advance(10)
    new_kid = ring.rotate()
    new = service.issue_access(user_id="1", session_id="s", role="user")
    assert jwt.get_unverified_header(new.token)["kid"] == new_kid != old_kid
    assert service.verify_access(old.token) == old.claims
    assert service.verify_access(new.token) == new.claims

    clock.advance(TTL + RETIRED_GRACE)
    assert service.verify_access(old.token) == old.claims
    clock.advance(1)
    assert refused(service, old.token).data["reason"] == "unknown_kid"
    assert service.verify_access(new.token) == new.claims


def test_other_process_rotation_is_seen_on_the_new_kid(tmp_path: Path, clock: FrozenClock) -> None:
    server = make_service(make_ring(tmp_path, "EdDSA", clock), clock)
    server.verify_access(server.issue_access(user_id="1", session_id="s", role="user").token)
    cli_ring = make_ring(tmp_path, "EdDSA", clock)
    cli_ring.rotate()
    clock.advance(1)  # reloads are rate limited to one a second
    token = make_service(cli_ring, clock).issue_access(user_id="2", session_id="s",
                                                       role="user").token
    assert server.verify_access(token).sub == "2"


def test_claims_are_frozen() -> None:
    claims = AccessClaims(sub="1", sid="s", jti="j", iat=1, nbf=1, exp=2, role="user", fgp=None)
    with pytest.raises(AttributeError):
        claims.role = "admin"  # type: ignore[misc]

"""The keyring: files and modes on disk, rotation, retirement, JWKS, sharing a dir."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import stat
import threading
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from app import keys
from app.clock import FrozenClock
from app.errors import ConfigError
from app.keys import RETIRED_GRACE, Keyring, public_jwk
from app.secret import Secret

ASYMMETRIC = ("EdDSA", "ES256", "RS256")
TTL = 900
SECRET = hashlib.sha512(b"latch test secret").digest()
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def load(keys_dir: Path, alg: str, clock: FrozenClock) -> Keyring:
    secret = Secret(SECRET) if alg == "HS256" else None
    return Keyring.load_or_create(keys_dir, alg, secret=secret, access_ttl=TTL, clock=clock)


def metadata(keys_dir: Path) -> list[dict[str, object]]:
    doc = json.loads((keys_dir / "keyring.json").read_text())
    assert doc["version"] == 1
    entries: list[dict[str, object]] = doc["keys"]
    return entries


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(members: dict[str, str]) -> str:
    """RFC 7638 computed independently of app.keys."""
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return b64(hashlib.sha256(canonical.encode()).digest())


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture(params=ASYMMETRIC)
def alg(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


# --- first start and files on disk ---------------------------------------------


def test_first_start_creates_private_dir_key_and_metadata(
    tmp_path: Path, alg: str, clock: FrozenClock
) -> None:
    keys_dir = tmp_path / "var" / "keys"
    ring = load(keys_dir, alg, clock)

    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    [entry] = metadata(keys_dir)
    assert entry == {"kid": ring.signing_key.kid, "alg": alg, "created_at": int(clock.now()),
                     "retired_at": None, "file": f"{ring.signing_key.kid}.pem"}
    key_file = keys_dir / str(entry["file"])
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS8
    assert not [p for p in keys_dir.iterdir() if p.name.endswith(".tmp")]


def test_key_file_is_0600_even_with_a_permissive_umask(tmp_path: Path, clock: FrozenClock) -> None:
    old = os.umask(0)
    try:
        ring = load(tmp_path / "keys", "EdDSA", clock)
    finally:
        os.umask(old)
    key_file = tmp_path / "keys" / f"{ring.signing_key.kid}.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700


@pytest.mark.parametrize(
    ("alg", "kind"),
    [("EdDSA", ed25519.Ed25519PrivateKey), ("ES256", ec.EllipticCurvePrivateKey),
     ("RS256", rsa.RSAPrivateKey)],
)
def test_generated_key_matches_the_algorithm(
    tmp_path: Path, clock: FrozenClock, alg: str, kind: type
) -> None:
    key = load(tmp_path, alg, clock).signing_key.private_key
    assert isinstance(key, kind)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        assert key.curve.name == "secp256r1"
    if isinstance(key, rsa.RSAPrivateKey):
        assert key.key_size >= 2048


def test_restart_reuses_the_same_key(tmp_path: Path, alg: str, clock: FrozenClock) -> None:
    first = load(tmp_path, alg, clock).signing_key.kid
    assert load(tmp_path, alg, clock).signing_key.kid == first
    assert len(metadata(tmp_path)) == 1


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o620])
def test_start_refused_when_key_file_is_readable_by_others(
    tmp_path: Path, clock: FrozenClock, mode: int
) -> None:
    kid = load(tmp_path, "EdDSA", clock).signing_key.kid
    key_file = tmp_path / f"{kid}.pem"
    key_file.chmod(mode)
    with pytest.raises(ConfigError) as err:
        load(tmp_path, "EdDSA", clock)
    assert str(key_file) in str(err.value)
    assert "chmod 600" in str(err.value)


def test_start_refused_for_a_loose_key_file_not_in_metadata(
    tmp_path: Path, clock: FrozenClock
) -> None:
    load(tmp_path, "EdDSA", clock)
    stray = tmp_path / "old.pem"
    stray.write_bytes(b"-----BEGIN PRIVATE KEY-----\n")
    stray.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load(tmp_path, "EdDSA", clock)


def test_start_refused_when_key_file_is_a_symlink(tmp_path: Path, clock: FrozenClock) -> None:
    kid = load(tmp_path, "EdDSA", clock).signing_key.kid
    key_file = tmp_path / f"{kid}.pem"
    elsewhere = tmp_path.parent / f"{tmp_path.name}-moved.pem"
    key_file.rename(elsewhere)
    key_file.symlink_to(elsewhere)
    with pytest.raises(ConfigError, match=kid):
        load(tmp_path, "EdDSA", clock)


@pytest.mark.parametrize("file", ["../../etc/passwd", "/etc/ssl/key.pem", "a/b.pem", "x.txt"])
def test_metadata_cannot_point_outside_keys_dir(
    tmp_path: Path, clock: FrozenClock, file: str
) -> None:
    load(tmp_path, "EdDSA", clock)
    entries = metadata(tmp_path)
    entries[0]["file"] = file
    (tmp_path / "keyring.json").write_text(json.dumps({"version": 1, "keys": entries}))
    with pytest.raises(ConfigError, match=r"keyring\.json"):
        load(tmp_path, "EdDSA", clock)


def test_metadata_kid_must_match_the_key_file(tmp_path: Path, clock: FrozenClock) -> None:
    load(tmp_path, "EdDSA", clock)
    entries = metadata(tmp_path)
    entries[0]["kid"] = "someone-elses-kid"
    (tmp_path / "keyring.json").write_text(json.dumps({"version": 1, "keys": entries}))
    with pytest.raises(ConfigError, match="does not match its kid"):
        load(tmp_path, "EdDSA", clock)


@pytest.mark.parametrize("content", ["", "{", "[]", '{"keys": [1]}', '{"keys": [{"kid": 1}]}'])
def test_corrupt_metadata_is_a_config_error(
    tmp_path: Path, clock: FrozenClock, content: str
) -> None:
    (tmp_path / "keyring.json").write_text(content)
    with pytest.raises(ConfigError, match=r"keyring\.json"):
        load(tmp_path, "EdDSA", clock)


def test_changed_algorithm_retires_the_old_keys(tmp_path: Path, clock: FrozenClock) -> None:
    old = load(tmp_path, "EdDSA", clock).signing_key.kid
    clock.advance(10)
    ring = load(tmp_path, "ES256", clock)

    assert ring.signing_key.alg == "ES256"
    by_kid = {e["kid"]: e for e in metadata(tmp_path)}
    assert by_kid[old]["retired_at"] == int(clock.now())
    assert by_kid[ring.signing_key.kid]["retired_at"] is None
    assert [k["kid"] for k in ring.jwks()["keys"]] == [ring.signing_key.kid]
    assert ring.verification_key(old) is None


def test_concurrent_first_start_makes_one_key(
    tmp_path: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Widen the race window: without the lock every thread would generate a key.
    real_generate = keys._generate

    def slow_generate(alg: str) -> keys.PrivateKey:
        time.sleep(0.05)
        return real_generate(alg)

    monkeypatch.setattr(keys, "_generate", slow_generate)
    barrier = threading.Barrier(6)
    kids: list[str] = []

    def start() -> None:
        barrier.wait()
        kids.append(load(tmp_path, "EdDSA", clock).signing_key.kid)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(kids) == 6
    assert len(set(kids)) == 1
    assert len(metadata(tmp_path)) == 1
    assert len(list(tmp_path.glob("*.pem"))) == 1


# --- rotation and retirement -------------------------------------------------------


def test_rotate_retires_the_previous_key(tmp_path: Path, alg: str, clock: FrozenClock) -> None:
    ring = load(tmp_path, alg, clock)
    old = ring.signing_key.kid
    clock.advance(100)
    new = ring.rotate()

    assert new != old
    assert ring.signing_key.kid == new
    by_kid = {e["kid"]: e for e in metadata(tmp_path)}
    assert by_kid[old]["retired_at"] == int(clock.now())
    assert by_kid[new]["retired_at"] is None
    assert ring.verification_key(old) is not None
    assert [k["kid"] for k in ring.jwks()["keys"]] == [new, old]  # newest first
    assert stat.S_IMODE((tmp_path / f"{new}.pem").stat().st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_retired_key_lives_until_ttl_plus_grace(tmp_path: Path, clock: FrozenClock) -> None:
    ring = load(tmp_path, "EdDSA", clock)
    old = ring.signing_key.kid
    ring.rotate()

    clock.advance(TTL + RETIRED_GRACE)
    assert ring.verification_key(old) is not None
    assert old in [k["kid"] for k in ring.jwks()["keys"]]

    clock.advance(1)
    assert ring.verification_key(old) is None
    assert old not in [k["kid"] for k in ring.jwks()["keys"]]
    assert (tmp_path / f"{old}.pem").exists()  # memory first; files go with prune()

    assert ring.prune() == [old]
    assert not (tmp_path / f"{old}.pem").exists()
    assert old not in [e["kid"] for e in metadata(tmp_path)]


def test_rotate_also_prunes_dead_keys(tmp_path: Path, clock: FrozenClock) -> None:
    ring = load(tmp_path, "EdDSA", clock)
    first = ring.signing_key.kid
    ring.rotate()
    clock.advance(TTL + RETIRED_GRACE + 1)
    ring.rotate()
    assert first not in [e["kid"] for e in metadata(tmp_path)]
    assert len(list(tmp_path.glob("*.pem"))) == 2


def test_restart_skips_dead_keys(tmp_path: Path, clock: FrozenClock) -> None:
    ring = load(tmp_path, "EdDSA", clock)
    old = ring.signing_key.kid
    ring.rotate()
    clock.advance(TTL + RETIRED_GRACE + 1)
    again = load(tmp_path, "EdDSA", clock)
    assert again.verification_key(old) is None
    assert not (tmp_path / f"{old}.pem").exists()


# --- several processes on one directory ------------------------------------------


def test_second_instance_picks_up_a_rotation(tmp_path: Path, clock: FrozenClock) -> None:
    server = load(tmp_path, "EdDSA", clock)
    cli = load(tmp_path, "EdDSA", clock)
    new = cli.rotate()

    assert server.verification_key(new) is None
    assert server.reload_if_changed() is True
    assert server.verification_key(new) is not None
    assert server.signing_key.kid == new  # the newest active key signs after a reload


def test_reload_is_rate_limited_to_once_a_second(tmp_path: Path, clock: FrozenClock) -> None:
    server = load(tmp_path, "EdDSA", clock)
    cli = load(tmp_path, "EdDSA", clock)
    assert server.reload_if_changed() is False  # nothing changed; the check still counts
    cli.rotate()
    assert server.reload_if_changed() is False  # within the same second: no disk access
    clock.advance(1)
    assert server.reload_if_changed() is True
    assert server.reload_if_changed() is False


def test_signer_follows_a_rotation_made_elsewhere(tmp_path: Path, clock: FrozenClock) -> None:
    # Without this a node that never meets the new kid would sign with a
    # retired key forever, and its tokens would die when that key is pruned.
    server = load(tmp_path, "EdDSA", clock)
    new = load(tmp_path, "EdDSA", clock).rotate()
    clock.advance(1)
    assert server.signing_key.kid == new


def test_bad_reload_keeps_the_loaded_keys(
    tmp_path: Path, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    server = load(tmp_path, "EdDSA", clock)
    kid = server.signing_key.kid
    (tmp_path / "keyring.json").write_text("not json")
    clock.advance(1)
    assert server.reload_if_changed() is False
    assert server.signing_key.kid == kid
    assert server.verification_key(kid) is not None
    assert "keyring reload failed" in caplog.text


# --- JWKS --------------------------------------------------------------------------


def test_jwks_is_public_only_and_kid_is_the_rfc7638_thumbprint(
    tmp_path: Path, alg: str, clock: FrozenClock
) -> None:
    ring = load(tmp_path, alg, clock)
    ring.rotate()
    published = ring.jwks()["keys"]
    assert len(published) == 2
    for jwk in published:
        assert not PRIVATE_MEMBERS & jwk.keys()
        assert jwk["use"] == "sig"
        assert jwk["alg"] == alg
        required = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y"),
                    "RSA": ("e", "kty", "n")}[jwk["kty"]]
        assert jwk["kid"] == thumbprint({m: jwk[m] for m in required})
    assert published[0]["kid"] == ring.signing_key.kid


def test_jwks_verifies_our_tokens_with_a_stock_client(tmp_path: Path, alg: str,
                                                      clock: FrozenClock) -> None:
    ring = load(tmp_path, alg, clock)
    signer = ring.signing_key
    token = jwt.encode({"sub": "1"}, signer.private_key, algorithm=alg,
                       headers={"kid": signer.kid})
    jwk_set = jwt.PyJWKSet.from_dict(ring.jwks())
    assert jwt.decode(token, jwk_set[signer.kid], algorithms=[alg]) == {"sub": "1"}


def test_public_jwk_matches_the_rfc7638_example() -> None:
    n = ("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc"
         "_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGj"
         "QR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt"
         "-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
    modulus = int.from_bytes(base64.urlsafe_b64decode(n + "=" * (-len(n) % 4)), "big")
    key = rsa.RSAPublicNumbers(65537, modulus).public_key()
    assert public_jwk("RS256", key)["kid"] == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


# --- HS256 ---------------------------------------------------------------------------


def test_hs256_uses_the_secret_and_stores_nothing(tmp_path: Path, clock: FrozenClock) -> None:
    keys_dir = tmp_path / "keys"
    ring = load(keys_dir, "HS256", clock)
    kid = hashlib.sha256(b"latch-kid:" + SECRET).hexdigest()[:16]

    assert ring.signing_key.kid == kid
    assert ring.signing_key.private_key == SECRET
    assert ring.verification_key(kid) == SECRET
    assert ring.verification_key("other") is None
    assert ring.jwks() == {"keys": []}
    assert not keys_dir.exists()
    with pytest.raises(ConfigError, match="LATCH_JWT_SECRET_FILE"):
        ring.rotate()


def test_hs256_without_a_secret_is_refused(tmp_path: Path, clock: FrozenClock) -> None:
    with pytest.raises(ConfigError, match="LATCH_JWT_SECRET_FILE"):
        Keyring.load_or_create(tmp_path, "HS256", secret=None, access_ttl=TTL, clock=clock)


def test_unknown_algorithm_is_refused(tmp_path: Path, clock: FrozenClock) -> None:
    with pytest.raises(ConfigError, match="LATCH_JWT_ALG"):
        Keyring.load_or_create(tmp_path, "none", secret=None, access_ttl=TTL, clock=clock)


# --- nothing secret leaks ------------------------------------------------------------


def test_no_key_material_in_logs_or_reprs(
    tmp_path: Path, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ring = load(tmp_path / "a", "EdDSA", clock)
    other = load(tmp_path / "a", "EdDSA", clock)
    ring.rotate()
    clock.advance(1)
    other.reload_if_changed()
    hs = load(tmp_path / "b", "HS256", clock)

    pems = b"".join(p.read_bytes() for p in (tmp_path / "a").glob("*.pem"))
    text = caplog.text + repr(ring.signing_key) + repr(hs.signing_key)
    assert "PRIVATE KEY" not in text
    assert pems and pems.decode() not in text
    assert SECRET.hex() not in text
    assert repr(SECRET) not in text


def test_unwritable_keys_dir_is_a_config_error(tmp_path: Path, clock: FrozenClock) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir(mode=0o500)
    with pytest.raises(ConfigError, match="LATCH_KEYS_DIR"):
        load(keys_dir, "EdDSA", clock)


def test_write_failure_is_a_config_error(
    tmp_path: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(path: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(keys, "_write_atomic", disk_full)
    with pytest.raises(ConfigError, match="No space left"):
        load(tmp_path, "EdDSA", clock)

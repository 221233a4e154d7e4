"""Settings: ``LATCH_*`` environment variables, overridden by CLI flags.

Everything is validated once, at start-up; a bad value is a :class:`ConfigError`
with a message naming the variable, and ``latch`` exits non-zero. There are no
silent defaults for secrets.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.errors import ConfigError
from app.secret import Secret

ALGORITHMS = ("EdDSA", "ES256", "RS256", "HS256")
WEAK_SECRETS = {b"secret", b"changeme", b"password", b"jwtsecret", b"changeit", b"default"}
MIN_SECRET_BYTES = 32


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    db_path: Path = Path("./var/latch.db")
    redis_url: Secret[str] | None = None
    keys_dir: Path = Path("./var/keys")
    jwt_alg: str = "EdDSA"
    jwt_secret: Secret[bytes] | None = None
    issuer: str = "latch"
    audience: str = "latch"
    access_ttl: int = 900
    refresh_ttl: int = 30 * 86400
    refresh_idle_ttl: int = 7 * 86400
    refresh_notice: int = 60
    # Empty tuple means "same origin only".
    allowed_origins: tuple[str, ...] = ()
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    admin_password: Secret[str] | None = None
    node_id: str = ""
    # Insecure cookies are only for plain-http local development; never default.
    insecure_cookies: bool = False
    login_max_failures: int = 10
    login_window: int = 300
    max_body_bytes: int = 64 * 1024
    max_socket_payload: int = 64 * 1024
    socket_compression: bool = False
    socket_events_per_second: float = 20.0
    socket_event_burst: int = 40
    presence_ttl: int = 10
    revocation_staleness: int = 10
    log_format: str = "json"
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def redis_enabled(self) -> bool:
        return self.redis_url is not None

    def with_overrides(self, **overrides: Any) -> Settings:
        clean = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **clean)


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0,
         maximum: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise ConfigError(f"{name} must be at least {minimum}{upper}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def parse_origins(raw: str) -> tuple[str, ...]:
    origins: list[str] = []
    for item in raw.split(","):
        item = item.strip().rstrip("/")
        if not item:
            continue
        if item == "*":
            raise ConfigError("LATCH_ALLOWED_ORIGINS may not be '*': list the origins")
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            raise ConfigError(
                f"LATCH_ALLOWED_ORIGINS: {item!r} is not an origin like https://app.example.com"
            )
        origins.append(f"{parts.scheme}://{parts.netloc}".lower())
    return tuple(origins)


def parse_proxies(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    nets = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"LATCH_TRUSTED_PROXIES: {item!r} is not an IP or CIDR") from None
    return tuple(nets)


def check_secret(raw: bytes, source: str) -> bytes:
    """Refuse short or obviously weak HMAC secrets."""
    secret = raw.strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"{source}: the HS256 secret must be at least {MIN_SECRET_BYTES} random bytes "
            f"(got {len(secret)}); generate one with: head -c 48 /dev/urandom > FILE"
        )
    lowered = secret.lower()
    if lowered in WEAK_SECRETS or len(set(secret)) <= 4 or any(
        lowered == (w * (len(lowered) // len(w) + 1))[: len(lowered)] for w in WEAK_SECRETS
    ):
        raise ConfigError(f"{source}: the HS256 secret is too weak; use random bytes")
    return secret


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read and validate settings. ``overrides`` (CLI flags) win over ``env``."""
    env = os.environ if env is None else env
    alg = env.get("LATCH_JWT_ALG", "EdDSA").strip() or "EdDSA"
    if alg not in ALGORITHMS:
        raise ConfigError(f"LATCH_JWT_ALG must be one of {', '.join(ALGORITHMS)}, got {alg!r}")

    secret: Secret[bytes] | None = None
    secret_file = env.get("LATCH_JWT_SECRET_FILE", "").strip()
    if alg == "HS256":
        if not secret_file:
            raise ConfigError(
                "LATCH_JWT_ALG=HS256 needs LATCH_JWT_SECRET_FILE (>= 32 random bytes)"
            )
        try:
            data = Path(secret_file).read_bytes()
        except OSError as exc:
            raise ConfigError(f"LATCH_JWT_SECRET_FILE: cannot read {secret_file}: {exc}") from None
        secret = Secret(check_secret(data, "LATCH_JWT_SECRET_FILE"))

    redis_raw = env.get("LATCH_REDIS_URL", "").strip()
    redis_url: Secret[str] | None = None
    if redis_raw:
        if urlsplit(redis_raw).scheme not in ("redis", "rediss", "unix"):
            raise ConfigError("LATCH_REDIS_URL must start with redis://, rediss:// or unix://")
        redis_url = Secret(redis_raw)

    access_ttl = _int(env, "LATCH_ACCESS_TTL", 900, minimum=1, maximum=86400)
    refresh_ttl = _int(env, "LATCH_REFRESH_TTL", 30 * 86400, minimum=60)
    idle_ttl = _int(env, "LATCH_REFRESH_IDLE_TTL", 7 * 86400, minimum=60)
    if idle_ttl > refresh_ttl:
        idle_ttl = refresh_ttl
    notice = _int(env, "LATCH_REFRESH_NOTICE", 60, minimum=0)

    admin_pw = env.get("LATCH_ADMIN_PASSWORD")
    node_id = env.get("LATCH_NODE_ID", "").strip() or f"{os.uname().nodename}-{os.getpid()}"
    log_format = env.get("LATCH_LOG_FORMAT", "json").strip() or "json"
    if log_format not in ("json", "text"):
        raise ConfigError("LATCH_LOG_FORMAT must be json or text")

    settings = Settings(
        host=env.get("LATCH_HOST", "127.0.0.1"),
        port=_int(env, "LATCH_PORT", 8080, minimum=0, maximum=65535),
        db_path=Path(env.get("LATCH_DB", "./var/latch.db")),
        redis_url=redis_url,
        keys_dir=Path(env.get("LATCH_KEYS_DIR", "./var/keys")),
        jwt_alg=alg,
        jwt_secret=secret,
        issuer=env.get("LATCH_ISSUER", "latch"),
        audience=env.get("LATCH_AUDIENCE", "latch"),
        access_ttl=access_ttl,
        refresh_ttl=refresh_ttl,
        refresh_idle_ttl=idle_ttl,
        refresh_notice=notice,
        allowed_origins=parse_origins(env.get("LATCH_ALLOWED_ORIGINS", "")),
        trusted_proxies=parse_proxies(env.get("LATCH_TRUSTED_PROXIES", "")),
        admin_password=Secret(admin_pw) if admin_pw else None,
        node_id=node_id,
        insecure_cookies=_bool(env, "LATCH_INSECURE_COOKIES", False),
        login_max_failures=_int(env, "LATCH_LOGIN_MAX_FAILURES", 10, minimum=1),
        login_window=_int(env, "LATCH_LOGIN_WINDOW", 300, minimum=1),
        max_body_bytes=_int(env, "LATCH_MAX_BODY_BYTES", 64 * 1024, minimum=1024),
        max_socket_payload=_int(env, "LATCH_MAX_SOCKET_PAYLOAD", 64 * 1024, minimum=1024),
        socket_compression=_bool(env, "LATCH_SOCKET_COMPRESSION", False),
        socket_events_per_second=float(_int(env, "LATCH_SOCKET_EVENTS_PER_SECOND", 20, minimum=1)),
        socket_event_burst=_int(env, "LATCH_SOCKET_EVENT_BURST", 40, minimum=1),
        presence_ttl=_int(env, "LATCH_PRESENCE_TTL", 10, minimum=2),
        revocation_staleness=_int(env, "LATCH_REVOCATION_STALENESS", 10, minimum=1),
        log_format=log_format,
    )
    return settings.with_overrides(**overrides)

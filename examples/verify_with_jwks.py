"""A backend service verifying a Latch access token with the JWKS endpoint (PyJWT).

    echo "$ACCESS_TOKEN" | python examples/verify_with_jwks.py --url http://127.0.0.1:8080

Reads the token from standard input, prints its claims as JSON and exits 0 if
it is valid, or prints ``{"valid": false, "reason": ...}`` and exits 1.

What it checks, and why:

* the key comes only from Latch's JWKS, looked up by the token's ``kid``
  (``PyJWKClient`` caches it and re-fetches on an unknown ``kid``, so a key
  rotation needs nothing from you);
* the algorithm is pinned to the one you configured (``--alg``), never taken
  from the token: a token cannot choose ``none`` or turn a public key into an
  HMAC secret;
* ``typ`` must be ``at+jwt`` (RFC 9068), so an ID token or another JWT signed by
  the same key is not mistaken for an access token;
* ``iss`` and ``aud`` must be Latch's (``LATCH_ISSUER``/``LATCH_AUDIENCE``);
  ``exp``, ``nbf``, ``iat``, ``sub``, ``sid`` and ``jti`` must be present, and the
  time claims are checked with a small leeway for clock skew.

What it cannot know: whether the session was revoked after the token was
issued. Stateless verification trusts a token until its ``exp`` (at most
``LATCH_ACCESS_TTL``, 15 minutes by default). See docs/guide-backend.md.
"""

from __future__ import annotations

import argparse
import json
import sys

import jwt
from jwt import PyJWKClient

REQUIRED = ["iss", "aud", "sub", "sid", "jti", "iat", "nbf", "exp", "role"]
LEEWAY = 30  # seconds of clock skew tolerated between Latch and this service


def verify(token: str, jwks: PyJWKClient, *, alg: str, issuer: str, audience: str) -> dict:
    header = jwt.get_unverified_header(token)  # only to route: nothing here is trusted
    if header.get("typ") != "at+jwt":
        raise jwt.InvalidTokenError("not an access token (typ is not at+jwt)")
    if header.get("alg") != alg:
        raise jwt.InvalidAlgorithmError(f"algorithm must be {alg}")
    signing_key = jwks.get_signing_key_from_jwt(token)  # by kid; refetches on a new kid
    claims: dict = jwt.decode(
        token, signing_key.key, algorithms=[alg], audience=audience, issuer=issuer,
        leeway=LEEWAY, options={"require": REQUIRED, "strict_aud": True})
    return claims


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="Latch's base URL")
    parser.add_argument("--alg", default="EdDSA", choices=["EdDSA", "ES256", "RS256"],
                        help="LATCH_JWT_ALG (HS256 tokens cannot be verified with a JWKS)")
    parser.add_argument("--issuer", default="latch")
    parser.add_argument("--audience", default="latch")
    args = parser.parse_args()
    token = sys.stdin.readline().strip()
    jwks = PyJWKClient(f"{args.url.rstrip('/')}/.well-known/jwks.json", cache_keys=True,
                       lifespan=300, timeout=5)
    try:
        claims = verify(token, jwks, alg=args.alg, issuer=args.issuer, audience=args.audience)
    except jwt.PyJWTError as exc:  # PyJWKClientError (unknown kid, JWKS down) is one too
        print(json.dumps({"valid": False, "reason": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps({"valid": True, "user_id": claims["sub"], "session_id": claims["sid"],
                      "role": claims["role"], "expires_at": claims["exp"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

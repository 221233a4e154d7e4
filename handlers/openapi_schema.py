"""Building blocks of the OpenAPI document: schemas, shared responses, operation helpers.

Written once here so every operation says the same thing about the error shape,
the token response and the 400/401/403 answers (CONTRACT §3, docs/admin-api.md).
The paths are in ``handlers.openapi_paths``; the document in ``handlers.openapi``.
"""

from __future__ import annotations

from typing import Any

JSON = "application/json"
Schema = dict[str, Any]

BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]
PUBLIC: list[dict[str, list[str]]] = []


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None, *,
        closed: bool = False, **extra: Any) -> Schema:
    out: Schema = {"type": "object", "required": list(required),
                   "properties": {**required, **(optional or {})}, **extra}
    if closed:
        out["additionalProperties"] = False
    return out


STR: Schema = {"type": "string"}
NSTR: Schema = {"type": ["string", "null"]}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
NNUM: Schema = {"type": ["number", "null"]}
BOOL: Schema = {"type": "boolean"}
ROLE: Schema = {"type": "string", "enum": ["user", "admin"]}


def schemas() -> dict[str, Schema]:
    session_fields = {
        "id": STR, "device": STR, "created_at": NUM, "last_seen_at": NUM, "expires_at": NUM,
        "idle_expires_at": NUM, "ip": NSTR, "user_agent": NSTR, "revoked_at": NNUM,
        "revoked_reason": NSTR,
    }
    kill_node = obj({"node": STR, "ended": INT, "confirmed": BOOL})
    return {
        "Error": obj({"error": obj({"code": {"type": "string", "pattern": "^[a-z_]+$"},
                                    "message": STR})},
                     description="Every error. `code` is the contract's string; `message` is free."),
        "UserRef": obj({"id": STR, "username": STR, "role": ROLE}),
        "User": obj({"id": STR, "username": STR, "role": ROLE, "disabled": BOOL,
                     "created_at": NUM, "updated_at": NUM}),
        "TokenResponse": obj(
            {"access_token": STR, "token_type": {"const": "Bearer"},
             "expires_in": {"type": "integer", "minimum": 1}, "session_id": STR,
             "user": ref("UserRef")},
            {"refresh_token": {"type": "string", "pattern": "^lrt_",
                               "description": "Body transport only; cookie transport sets "
                                              "the HttpOnly refresh cookie instead."}}),
        "MySession": obj({**session_fields, "current": BOOL},
                         {"online": BOOL, "connections": INT, "token_expires_at": INT}),
        "Session": obj({**session_fields, "user": ref("UserRef")},
                       {"online": BOOL, "connections": INT}),
        "Connection": obj(
            {"socket_id": STR, "user": ref("UserRef"), "session_id": STR, "node": STR,
             "connected_at": NUM, "expires_at": NUM,
             "transport": {"type": "string", "enum": ["websocket", "polling"]},
             "ip": NSTR, "user_agent": NSTR},
            {"device": NSTR}),
        "KillResult": obj({"revoked": {"const": True}, "sessions": INT, "sockets": obj(
            {"ended": INT, "confirmed": BOOL, "nodes": {"type": "array", "items": kill_node}})}),
        "AdminUser": {"allOf": [ref("User"), obj({}, {"sessions_active": INT, "online": BOOL})]},
        "AuditEntry": obj({"id": INT, "at": NUM,
                           "actor": {"oneOf": [{"type": "null"},
                                               obj({"id": NSTR, "username": STR})]},
                           "action": STR, "target": NSTR, "ip": NSTR,
                           "detail": {"type": "object"}}),
        "Page": obj({"total": INT, "limit": INT, "offset": INT}),
        "Jwk": obj({"kty": STR, "kid": STR},
                   {"alg": STR, "use": STR, "crv": STR, "x": STR, "y": STR, "n": STR, "e": STR}),
    }


def error(description: str, **headers: Schema) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description,
                           "content": {JSON: {"schema": ref("Error")}}}
    if headers:
        out["headers"] = {name.replace("_", "-"): {"schema": schema}
                          for name, schema in headers.items()}
    return out


RESPONSES: dict[str, dict[str, Any]] = {
    "BadRequest": error("`bad_request`: malformed JSON, wrong types, a value out of range."),
    "Unauthorized": error(
        "`token_missing`, `token_invalid`, `token_expired`, `session_revoked`, `user_disabled` "
        "(and `invalid_credentials` for a wrong current password).",
        WWW_Authenticate=STR),
    "Forbidden": error("`forbidden`: the token is valid but not an admin's."),
    "NotFound": error("`not_found` (also for another user's session: no IDOR oracle)."),
    "Conflict": error("`conflict`."),
    "PayloadTooLarge": error("`payload_too_large`: the body is over LATCH_MAX_BODY_BYTES."),
    "UnsupportedMediaType": error("`unsupported_media_type`: the body must be application/json."),
    "TooManyAttempts": error("`too_many_attempts`.", Retry_After=INT),
    "ServiceUnavailable": error(
        "`service_unavailable`: this node cannot confirm its revocation view is current."),
}


def json_body(schema: Schema, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def response_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def op(summary: str, tag: str, responses: dict[str, Any], *, security: list[Any],
       body: Schema | None = None, body_required: bool = True, params: list[Any] | None = None,
       description: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": summary, "tags": [tag], "security": security,
                           "responses": dict(responses)}
    if description:
        out["description"] = description
    if params:
        out["parameters"] = params
    if body is not None:
        out["requestBody"] = {"required": body_required, "content": {JSON: {"schema": body}}}
        out["responses"].update({"400": response_ref("BadRequest"), "413": response_ref("PayloadTooLarge"),
                                 "415": response_ref("UnsupportedMediaType")})
    if security == BEARER:
        out["responses"].update({"401": response_ref("Unauthorized"),
                                 "503": response_ref("ServiceUnavailable")})
    return out


def admin(summary: str, responses: dict[str, Any], *, extra: dict[str, Any] | None = None,
          **kwargs: Any) -> dict[str, Any]:
    out = op(summary, "admin", {**responses, **(extra or {})}, security=BEARER, **kwargs)
    out["responses"]["403"] = response_ref("Forbidden")
    if any(p["in"] == "query" for p in kwargs.get("params") or ()):
        out["responses"]["400"] = response_ref("BadRequest")
    return out


def path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "minLength": 1, "maxLength": 100}}


def query(name: str, schema: Schema, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


MAX_LIMIT = 1000
LIMIT = query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, "page size")
OFFSET = query("offset", {"type": "integer", "minimum": 0, "maximum": 1_000_000_000},
               "rows to skip")
NO_CONTENT = {"204": {"description": "Done."}}
KILL = {"200": json_body(ref("KillResult"), "The kill result: sessions revoked, sockets ended per "
                     "node (`confirmed: false` for a node that did not answer in time)."),
        "404": response_ref("NotFound")}
REASON = obj({}, {"reason": {"type": "string", "maxLength": 500}}, closed=True)

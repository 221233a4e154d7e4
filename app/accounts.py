"""Account changes that end sessions: password change, disable, role change.

Each change and the revocation it causes commit in one transaction (the
change runs as the revocation's ``in_tx`` hook), so a crash can never leave a
disabled user with live sessions.
"""

from __future__ import annotations

import aiosqlite

from app.audit import Actor
from app.errors import BadRequest, Conflict, InvalidCredentials
from app.passwords import check_policy
from app.revocation import KillResult, RevocationService
from app.users import User, UserStore, check_role


class AccountService:
    def __init__(self, users: UserStore, revocation: RevocationService) -> None:
        self._users = users
        self._revocation = revocation

    async def change_password(self, user_id: str, current_session: str | None, old: object,
                              new: object, *, actor: Actor) -> KillResult:
        if not isinstance(old, str):
            raise BadRequest("old_password must be a string")
        new_pw = check_policy(new)
        if not await self._users.verify_password(user_id, old):
            raise InvalidCredentials("current password is wrong")
        return await self.set_password(user_id, new_pw, actor=actor, keep_session=current_session)

    async def set_password(self, user_id: str, password: object, *, actor: Actor,
                           keep_session: str | None = None) -> KillResult:
        new_hash = await self._users.hash_password(check_policy(password))

        async def write(tx: aiosqlite.Connection) -> None:
            await self._users.set_password(tx, user_id, new_hash)

        return await self._revocation.revoke_user(
            user_id, code="password_changed", actor=actor, except_session=keep_session,
            reason="password changed", action="user.password", in_tx=write)

    async def update(self, user_id: str, *, role: object = None, disabled: object = None,
                     actor: Actor) -> tuple[User, KillResult | None]:
        user = await self._users.require(user_id)
        if role is not None:
            role = check_role(role)
        if disabled is not None and not isinstance(disabled, bool):
            raise BadRequest("disabled must be true or false")
        role_changed = role is not None and role != user.role
        disabling = disabled is True and not user.disabled
        enabling = disabled is False and user.disabled
        if user.role == "admin" and not user.disabled and (disabling or (role_changed and role != "admin")):
            await self._ensure_other_admin(user.id)
        new_role = str(role) if role_changed else None
        new_disabled = True if disabling else (False if enabling else None)

        async def write(tx: aiosqlite.Connection) -> None:
            await self._users.set_fields(tx, user.id, role=new_role, disabled=new_disabled)

        result: KillResult | None = None
        if disabling or role_changed:
            code = "user_disabled" if disabling else "role_changed"
            result = await self._revocation.revoke_user(
                user.id, code=code, actor=actor, reason=code,
                action="user.disable" if disabling else "user.role", in_tx=write)
        elif enabling:  # nothing to end: a plain audited update
            await self._users.update_audited(user.id, write, actor=actor, action="user.enable")
        updated = await self._users.require(user.id)
        if disabling or role_changed or enabling:
            await self._revocation.publish_event("user_changed", {"user": updated.as_dict()})
        return updated, result

    async def _ensure_other_admin(self, user_id: str) -> None:
        users, _ = await self._users.list(limit=10_000, offset=0)
        if not any(u.role == "admin" and not u.disabled and u.id != user_id for u in users):
            raise Conflict("this is the last active admin; promote another admin first")

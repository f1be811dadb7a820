"""Users, roles, passwords, page sessions and API tokens.

Users are never deleted, only deactivated. Passwords are argon2id hashes. Five failed sign-ins
(or failed signature passwords) lock an account for a set time (an administrator may unlock it
sooner); sign-in gives one answer to every failure and is rate limited; every sign-in, failure and
lock is audited.

Parts: `rules` (the password policy, roles and who is who), `signin` (authentication and page
sessions), `throttle` (sign-in rate limits), `strength` (what makes a password guessable),
`tokens` (API tokens), `accounts` (what an administrator changes), `scope` (the sites and
studies a site-role user works for: the rules every site action and list asks) and `links` (the
administrator linking users to them).
"""
from __future__ import annotations

from .accounts import (
    change_own_password,
    create_user,
    deactivate,
    reactivate,
    reset_password,
    set_email,
    set_roles,
    unlock,
)
from .links import choices, link, unlink
from .rules import (
    POLICY,
    Policy,
    actor,
    all_users,
    by_id,
    by_username,
    cli_actor,
    configure,
    parse_roles,
    password_problem,
    require_role,
    role_combination_problem,
    roles_of,
    signin_settings,
    user_page,
)
from .scope import (
    SITE_ROLES,
    all_links,
    is_scoped,
    links_of,
    require_scope,
    require_visible,
    scope_conditions,
    scope_of,
    scope_refusal,
    sees,
    sees_kit,
    site_refusal,
    study_refusal,
    within,
)
from .signin import (
    COSIGN_REFUSED,
    IDLE_ENDED,
    SIGNIN_REFUSED,
    LiveSession,
    cosigner,
    end_session,
    end_sessions,
    idle_limit,
    is_idle,
    live_session,
    login,
    reauthenticate,
    renew_session,
    start_session,
    token_digest,
    touch_due,
)
from .tokens import TOKEN_PREFIX, actor_for_token, create_token, revoke_token, revoke_tokens, tokens_of, user_for_token

# tests/conftest.py reads a page session's id by this older, private name.
_digest = token_digest

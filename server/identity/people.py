"""Who a set of verified claims (an id_token, an external access token) is to grantkeeper: org, user and whether
an administrator — and whether they may sign in at all (allowed email domains, a required group)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.settings import Settings

MAX_NAME_LENGTH = 200


class SignInRefused(Exception):
    """The claims are valid but this person may not use grantkeeper. `reason` is safe to show them."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Person:
    org: str
    user: str
    subject: str
    email: str | None
    is_admin: bool

    @property
    def display(self) -> str:
        return f"{self.user} (org {self.org})"


def _csv(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",") if item.strip()}


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or "/" in value or len(value) > MAX_NAME_LENGTH:
        raise SignInRefused(f"the identity provider gave no usable {what}")
    return value


def person_from_claims(claims: dict[str, Any], settings: Settings) -> Person:
    """Map verified claims to a Person under the sign-in policy; `SignInRefused` if the policy says no."""
    subject = _name(claims.get("sub"), "subject")
    email = claims.get("email") if isinstance(claims.get("email"), str) else None
    if email is not None and claims.get("email_verified") is False:
        email = None  # an unverified address proves nothing: not a user name, not a domain, not an admin
    user_claim = settings.oidc_user_claim
    named = email if user_claim == "email" else claims.get(user_claim)
    user = subject if named is None else _name(named, user_claim)
    if settings.oidc_org_claim:
        org = _name(claims.get(settings.oidc_org_claim), f"organisation ({settings.oidc_org_claim})")
    else:
        org = settings.oidc_org or settings.org
    domains = _csv(settings.oidc_allowed_email_domains)
    if domains and (email is None or email.rsplit("@", 1)[-1].lower() not in domains):
        raise SignInRefused("your account's email domain is not allowed to sign in here")
    groups_value = claims.get(settings.oidc_groups_claim)
    groups = {str(group) for group in groups_value} if isinstance(groups_value, list) else set()
    if settings.oidc_required_group and settings.oidc_required_group not in groups:
        raise SignInRefused("your account is not in the group allowed to sign in here")
    is_admin = bool(
        (email and email.lower() in _csv(settings.admin_emails)) or (settings.admin_group and settings.admin_group in groups)
    )
    return Person(org=org, user=user, subject=subject, email=email, is_admin=is_admin)

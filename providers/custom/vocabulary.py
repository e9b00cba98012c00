"""A declared provider's error vocabulary: where it departs from RFC 6749 §5.2 (token endpoint errors) and RFC 6750
§3.1 (API errors), as data the classifier in `providers/custom/provider.py` reads.

    errors = ErrorVocabulary.model_validate({"temporary": ["overloaded"],
                                             "api": [{"status": 403, "field": "error.code", "equals": "TOKEN_EXPIRED",
                                                      "verdict": "expired"}]})
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from providers.base import Verdict, dotted_lookup
from providers.custom.params import Declaration, Scalar


class ApiErrorRule(Declaration):
    """An API answer that means something the status code alone does not say, e.g.
    `{status = 403, field = "error.code", equals = "TOKEN_EXPIRED", verdict = "expired"}`."""

    status: int | None = Field(default=None, ge=100, le=599)
    field: str | None = Field(default=None, min_length=1, max_length=200)
    equals: Scalar | list[Scalar] | None = None
    verdict: Verdict
    reason: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    message: str | None = Field(default=None, max_length=300)

    @model_validator(mode="after")
    def _says_what_to_match(self) -> ApiErrorRule:
        if self.status is None and self.field is None:
            raise ValueError("a rule needs a status, a field, or both")
        if self.equals is not None and self.field is None:
            raise ValueError("equals needs a field to compare")
        return self

    def matches(self, status: int, body: Any) -> tuple[bool, Any]:
        if self.status is not None and status != self.status:
            return False, None
        if self.field is None:
            return True, None
        found, value = dotted_lookup(body, self.field)
        if not found or value is None:
            return False, None
        if self.equals is None:
            return True, value
        wanted = self.equals if isinstance(self.equals, list) else [self.equals]
        return any(_same(value, w) for w in wanted), value


def _same(value: Any, wanted: Any) -> bool:
    """JSON equality: `true` is not `1`, while `1` and `1.0` are the same number."""
    if isinstance(value, bool) or isinstance(wanted, bool):
        return type(value) is type(wanted) and value == wanted
    return value == wanted


class TokenDescriptionRule(Declaration):
    contains: str = Field(min_length=3, max_length=200)
    means: Literal["refresh_token_rejected", "client_rejected", "temporary"]


class ErrorVocabulary(Declaration):
    """Where the provider departs from RFC 6749 §5.2 and RFC 6750 §3.1. The RFC codes keep their meaning."""

    refresh_token_rejected: list[str] = Field(default_factory=list)  # besides invalid_grant
    client_rejected: list[str] = Field(default_factory=list)  # besides invalid_client, unauthorized_client
    temporary: list[str] = Field(default_factory=list)  # besides temporarily_unavailable, server_error
    # Where the token endpoint puts its code when not in `error` (dotted, tried first), and what a body with only
    # a description means: `{contains = "expired", means = "refresh_token_rejected"}`.
    token_error_fields: list[str] = Field(default_factory=list, max_length=8)
    token_descriptions: list[TokenDescriptionRule] = Field(default_factory=list)
    api: list[ApiErrorRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _each_code_means_one_thing(self) -> ErrorVocabulary:
        seen: dict[str, str] = {}
        for group in ("refresh_token_rejected", "client_rejected", "temporary"):
            for code in getattr(self, group):
                if code in seen:
                    raise ValueError(f"token error {code!r} is listed in both {seen[code]} and {group}")
                seen[code] = group
        return self

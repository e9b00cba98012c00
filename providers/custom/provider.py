"""A declared provider: its `ProviderSpec` built from the declaration (and discovery), and its classifier, driven by
the declaration's error vocabulary with RFC 6749/6750 rules otherwise.

    provider = DeclaredProvider.from_declaration("acme", declaration, token_url="https://auth.acme.example/token",
                                                 authorize_url="https://auth.acme.example/authorize")
    provider.classify_api_response(response)      # Classification(Verdict.EXPIRED, "invalid_token", ...)
"""

from __future__ import annotations

import re
from typing import Any

import httpx2

from providers.base import (
    Classification,
    HealthProbe,
    Provider,
    ProviderSpec,
    TokenVerdict,
    Verdict,
    dotted_lookup,
    json_body,
    retry_after_seconds,
)
from providers.custom.declaration import ProviderDeclaration


class DeclaredProvider(Provider):
    """A provider whose spec and error vocabulary come from a declaration; RFC 6749/6750 rules otherwise."""

    def __init__(self, spec: ProviderSpec, declaration: ProviderDeclaration):
        self.spec = spec
        self.declaration = declaration

    @classmethod
    def from_declaration(
        cls,
        name: str,
        declaration: ProviderDeclaration,
        *,
        authorize_url: str,
        token_url: str,
        revoke_url: str | None = None,
        client_auth_method: str | None = None,
        jwks_uri: str | None = None,
        authorization_response_iss: bool = False,
        offline_access_supported: bool = True,
    ) -> DeclaredProvider:
        """Endpoints are full URLs (resolved from the declaration and discovery). Those under `oauth_base_url` are
        kept as paths, so GRANTKEEPER_<NAME>_OAUTH_BASE_URL can move them as it does for built-in providers."""
        base = (declaration.oauth_base_url or "").rstrip("/")

        def as_path(url: str | None) -> str | None:
            return url[len(base) :] if url is not None and base and url.startswith(base + "/") else url

        probe = declaration.health_probe
        spec = ProviderSpec(
            name=name,
            display_name=declaration.display_name or name.replace("_", " ").title(),
            api_base_url=declaration.api_base_url.rstrip("/"),
            oauth_base_url=base,
            authorize_path=as_path(authorize_url),
            token_path=as_path(token_url),
            revoke_path=as_path(revoke_url),
            client_auth_method=client_auth_method or declaration.client_auth_method or "client_secret_basic",
            token_request_headers=declaration.token_request_headers,
            api_headers=declaration.api_headers,
            scopes=declaration.scopes,
            scope_separator=declaration.scope_separator,
            default_access_ttl_seconds=declaration.default_access_ttl_seconds or None,
            default_refresh_ttl_seconds=declaration.default_refresh_ttl_seconds,
            rotates_refresh_token=declaration.rotates_refresh_token,
            health_probe=HealthProbe(method=probe.method, path=probe.path, body=probe.body) if probe else None,
            token_body_encoding=declaration.token_body_encoding,
            refresh_url=declaration.refresh_url,
            docs_url=declaration.docs_url,
            authorize_params=declaration.authorize_params,
            openid=declaration.openid,
            issuer=declaration.issuer,
            jwks_uri=declaration.jwks_url or jwks_uri,
            authorization_response_iss=authorization_response_iss,
            request_offline_access=(
                declaration.offline_access
                if declaration.offline_access is not None
                else declaration.openid and offline_access_supported
            ),
        )
        return cls(spec, declaration)

    def classify_api_response(self, response: httpx2.Response) -> Classification:
        status = response.status_code
        rules = self.declaration.errors.api
        body = json_body(response) if rules else None
        for rule in rules:
            matched, value = rule.matches(status, body)
            if matched:
                reason = rule.reason or (_safe_code(value) if value is not None else f"http_{status}")
                message = rule.message or f"{self.spec.display_name} answered {reason}."
                return Classification(rule.verdict, reason, message, retry_after_seconds(response))
        challenge = _bearer_error(response)
        if status == 401 and challenge == "invalid_token":
            return Classification(Verdict.EXPIRED, "invalid_token", f"{self.spec.display_name} did not accept the token.")
        if status == 403 and challenge == "insufficient_scope":
            return Classification(
                Verdict.FORBIDDEN,
                "insufficient_scope",
                f"The {self.spec.display_name} grant lacks a scope this call needs; reconnect with it.",
            )
        return super().classify_api_response(response)

    def token_error_code(self, body: dict[str, Any]) -> tuple[str | None, str | None]:
        _, description = super().token_error_code(body)
        for path in self.declaration.errors.token_error_fields:
            found, value = dotted_lookup(body, path)
            if found and isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                return str(value)[:64], description
        return super().token_error_code(body)

    def classify_token_response(self, error: str, description: str | None, http_status: int | None) -> TokenVerdict:
        if error == "unspecified_error" and description:
            for rule in self.declaration.errors.token_descriptions:
                if rule.contains.lower() in description.lower():
                    return {
                        "refresh_token_rejected": TokenVerdict.REJECTED,
                        "client_rejected": TokenVerdict.CLIENT_MISCONFIGURED,
                        "temporary": TokenVerdict.TRANSIENT,
                    }[rule.means]
        return self.classify_token_error(error, http_status)

    def classify_token_error(self, error: str, http_status: int | None) -> TokenVerdict:
        errors = self.declaration.errors
        if error in errors.refresh_token_rejected:
            return TokenVerdict.REJECTED
        if error in errors.client_rejected:
            return TokenVerdict.CLIENT_MISCONFIGURED
        if error in errors.temporary:
            return TokenVerdict.TRANSIENT
        return super().classify_token_error(error, http_status)

    def identity_from_probe(self, body: Any) -> tuple[str | None, dict[str, Any]]:
        probe = self.declaration.health_probe
        if probe is None or probe.account_id_field is None:
            return None, {}
        found, value = dotted_lookup(body, probe.account_id_field)
        if not found or value is None or isinstance(value, dict | list):
            return None, {}
        return str(value), {probe.account_id_field: value}


_BEARER_ERROR = re.compile(r'\berror\s*=\s*"?([A-Za-z_]+)"?')


def _bearer_error(response: httpx2.Response) -> str | None:
    """The `error` of an RFC 6750 §3 `WWW-Authenticate: Bearer …` challenge."""
    challenge = response.headers.get("www-authenticate", "")
    if not challenge.lower().startswith("bearer"):
        return None
    match = _BEARER_ERROR.search(challenge)
    return match.group(1) if match else None


def _safe_code(value: Any) -> str:
    text = re.sub(r"[^A-Za-z0-9_.:-]", "_", str(value))[:64]
    return text or "error"

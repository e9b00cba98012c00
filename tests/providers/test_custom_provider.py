"""A declared provider's classifiers and request building, on answers and arguments the simulator need not produce."""

from __future__ import annotations

import re

import httpx2
import pytest

from providers.base import TokenVerdict, Verdict
from providers.custom import DeclaredProvider, ProviderDeclaration, ToolDeclaration, UnsafeArgument, build_call

BASE = "https://api.acme.example/v1"


def provider(**declared: object) -> DeclaredProvider:
    declaration = ProviderDeclaration.model_validate(
        {
            "api_base_url": BASE,
            "token_url": "https://auth.acme.example/token",
            "authorize_url": "https://auth.acme.example/authorize",
            **declared,
        },
        context={"provider": "acme"},
    )
    return DeclaredProvider.from_declaration(
        "acme", declaration, authorize_url=declaration.endpoint("authorize"), token_url=declaration.endpoint("token")
    )


def tool(**declared: object) -> ToolDeclaration:
    return ToolDeclaration.model_validate({"name": "t", "description": "d", **declared}, context={"provider": "acme"})


# ---- classification ----------------------------------------------------------------------------------
def test_without_a_vocabulary_the_rfc_6750_challenges_decide():
    acme = provider()
    expired = httpx2.Response(401, headers={"WWW-Authenticate": 'Bearer realm="x", error="invalid_token"'})
    scope = httpx2.Response(403, headers={"WWW-Authenticate": 'Bearer error="insufficient_scope", scope="w"'})
    assert acme.classify_api_response(expired).verdict is Verdict.EXPIRED
    assert acme.classify_api_response(httpx2.Response(401)).verdict is Verdict.AUTH_FAILED
    assert (acme.classify_api_response(scope).verdict, acme.classify_api_response(scope).reason) == (
        Verdict.FORBIDDEN,
        "insufficient_scope",
    )
    limited = acme.classify_api_response(httpx2.Response(429, headers={"Retry-After": "3"}))
    assert (limited.verdict, limited.retry_after) == (Verdict.RATE_LIMITED, 3.0)
    assert acme.classify_api_response(httpx2.Response(503)).verdict is Verdict.TRANSIENT


def test_declared_rules_match_status_and_json_field_in_order_and_name_the_reason():
    acme = provider(
        errors={
            "api": [
                {"status": 200, "field": "ok", "equals": False, "verdict": "upstream", "reason": "not_ok"},
                {"field": "errors.0.reason", "equals": ["authError", "expired"], "verdict": "expired"},
                {"status": 400, "field": "error", "verdict": "invalid_input"},
            ]
        }
    )
    assert acme.classify_api_response(httpx2.Response(200, json={"ok": False})).reason == "not_ok"
    assert acme.classify_api_response(httpx2.Response(200, json={"ok": 0})).verdict is Verdict.OK  # 0 is not False
    assert acme.classify_api_response(httpx2.Response(200, json={"ok": True})).verdict is Verdict.OK
    expired = acme.classify_api_response(httpx2.Response(401, json={"errors": [{"reason": "authError"}]}))
    assert (expired.verdict, expired.reason) == (Verdict.EXPIRED, "authError")
    odd = acme.classify_api_response(httpx2.Response(400, json={"error": "bad thing <b>"}))
    assert (odd.verdict, odd.reason) == (Verdict.INVALID_INPUT, "bad_thing__b_")
    assert acme.classify_api_response(httpx2.Response(400, text="<html>")).verdict is Verdict.INVALID_INPUT


def test_declared_token_error_codes_add_to_the_rfc_codes():
    acme = provider(
        errors={"refresh_token_rejected": ["BAD_REFRESH_TOKEN"], "client_rejected": ["bad_client"], "temporary": ["try_later"]}
    )
    assert acme.classify_token_error("BAD_REFRESH_TOKEN", 400) is TokenVerdict.REJECTED
    assert acme.classify_token_error("invalid_grant", 400) is TokenVerdict.REJECTED
    assert acme.classify_token_error("bad_client", 401) is TokenVerdict.CLIENT_MISCONFIGURED
    assert acme.classify_token_error("try_later", 503) is TokenVerdict.TRANSIENT
    assert acme.classify_token_error("something_else", 400) is TokenVerdict.UNKNOWN


def test_a_token_error_code_cannot_mean_two_things():
    with pytest.raises(ValueError, match="listed in both refresh_token_rejected and temporary"):
        provider(errors={"refresh_token_rejected": ["x"], "temporary": ["x"]})


def test_the_probe_names_the_account_from_the_declared_field():
    acme = provider(health_probe={"path": "/me", "account_id_field": "data.id"})
    assert acme.identity_from_probe({"data": {"id": 42}}) == ("42", {"data.id": 42})
    assert acme.identity_from_probe({"data": {}}) == (None, {})


# ---- hints from the method -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "extra", "hints"),
    [
        ("GET", {}, (True, True, False)),
        ("POST", {}, (False, False, False)),
        ("POST", {"read_only": True}, (True, True, False)),
        ("POST", {"idempotency_header": "Idempotency-Key"}, (False, True, False)),
        ("PUT", {}, (False, True, True)),
        ("PATCH", {}, (False, False, True)),
        ("DELETE", {}, (False, True, True)),
        ("DELETE", {"idempotent": False, "destructive": False}, (False, False, False)),
    ],
)
def test_hints_default_from_the_http_method(method, extra, hints):
    declared = tool(method=method.lower(), path="/x", **extra)
    assert (declared.is_read_only, declared.is_idempotent, declared.is_destructive) == hints


def test_parameters_go_where_they_belong_by_default():
    declared = tool(
        method="POST",
        path="/p/{id}",
        params=[{"name": "id"}, {"name": "title"}, {"name": "draft", "type": "boolean", "in": "query"}],
    )
    assert [p.location for p in declared.params] == ["path", "body", "query"]
    call = build_call(declared, {"id": "a b", "title": "T", "draft": True}, api_base_url=BASE)
    assert (call.method, call.path, call.params, call.json, call.idempotent) == (
        "POST",
        "/p/a%20b",
        {"draft": "true"},
        {"title": "T"},
        False,
    )


def test_form_bodies_and_idempotency_keys():
    declared = tool(
        method="POST",
        path="/p",
        body_encoding="form",
        idempotency_header="Idempotency-Key",
        params=[{"name": "n", "type": "number"}, {"name": "unset"}],
    )
    call = build_call(declared, {"n": 2.0, "unset": None}, api_base_url=BASE, idempotency_key="k1")
    assert (call.data, call.json, call.headers, call.idempotent) == ({"n": "2"}, None, {"Idempotency-Key": "k1"}, True)


# ---- path safety -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "path"),
    [
        ("../admin", "/projects/..%2Fadmin/members"),
        ("%2e%2e", "/projects/%252e%252e/members"),
        ("a/b?c#d", "/projects/a%2Fb%3Fc%23d/members"),
        ("https://evil.example", "/projects/https%3A%2F%2Fevil.example/members"),
        ("..\\..", "/projects/..%5C../members"),
        ("ü", "/projects/%C3%BC/members"),
    ],
)
def test_a_path_argument_is_one_encoded_segment(value, path):
    declared = tool(path="/projects/{id}/members", params=[{"name": "id"}])
    call = build_call(declared, {"id": value}, api_base_url=BASE)
    assert call.path == path
    assert str(httpx2.URL(BASE + call.path)).startswith(BASE + "/projects/")


@pytest.mark.parametrize("value", ["..", ".", ""])
def test_dot_segments_and_empty_segments_are_refused(value):
    declared = tool(path="/{id}", params=[{"name": "id"}])
    with pytest.raises(UnsafeArgument, match=re.escape("may not be empty, '.' or '..'")):
        build_call(declared, {"id": value}, api_base_url=BASE)


# ---- conformance fields ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("declared", "problem"),
    [
        ({"path": "/p/{ids}", "params": [{"name": "ids", "type": "array", "items": {"type": "string"}}]}, "one value"),
        (
            {"path": "/p", "params": [{"name": "o", "type": "object", "in": "query", "properties": [{"name": "a"}]}]},
            "objects go in the body",
        ),
        ({"path": "/p", "method": "POST", "params": [{"name": "o", "type": "object"}]}, "needs properties"),
        ({"path": "/p", "params": [{"name": "a", "type": "array"}]}, "needs items"),
        ({"path": "/p", "params": [{"name": "a", "items": {"type": "string"}}]}, "array parameters only"),
        (
            {"path": "/p", "params": [{"name": "a", "type": "array", "items": {"type": "string"}, "max_items": 5000}]},
            "less than or equal to 1000",
        ),
        (
            {
                "path": "/p",
                "method": "POST",
                "body_encoding": "form",
                "params": [{"name": "o", "type": "object", "properties": [{"name": "a"}]}],
            },
            "form body has no objects",
        ),
    ],
)
def test_structured_parameters_are_refused_where_they_cannot_go(declared, problem):
    with pytest.raises(ValueError, match=problem):
        tool(**declared)


def test_nesting_is_bounded():
    param: dict = {"name": "leaf"}
    for depth in range(6):
        param = {"name": f"n{depth}", "type": "object", "properties": [param]}
    with pytest.raises(ValueError, match="nest at most"):
        tool(path="/p", method="POST", params=[param])


@pytest.mark.parametrize("name", ["state", "redirect_uri", "scope", "nonce", "client_id", "code_challenge"])
def test_authorize_params_cannot_replace_what_grantkeeper_sets(name):
    with pytest.raises(ValueError, match="set by grantkeeper"):
        provider(authorize_params={name: "x"})


def test_authorize_params_and_openid_reach_the_spec():
    acme = provider(authorize_params={"prompt": "consent", "access_type": "offline"})
    assert acme.spec.authorize_params == {"prompt": "consent", "access_type": "offline"}
    with pytest.raises(ValueError, match="openid = true needs issuer"):
        provider(openid=True)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"error": "invalid_grant"}, "invalid_grant"),
        ({"error": {"code": "invalid_grant", "message": "gone"}}, "invalid_grant"),
        ({"error": {"type": "OAuthException"}}, "OAuthException"),
        ({"errors": [{"code": "TOKEN_REVOKED"}]}, "TOKEN_REVOKED"),
        ({"error_description": "Refresh token expired"}, "unspecified_error"),
        ({"something": "else"}, None),
    ],
)
def test_token_error_codes_are_found_in_the_common_shapes(body, code):
    assert provider().token_error_code(body)[0] == code


def test_a_declared_description_rule_decides_a_description_only_token_error():
    acme = provider(errors={"token_descriptions": [{"contains": "expired", "means": "refresh_token_rejected"}]})
    assert acme.classify_token_response("unspecified_error", "Refresh token EXPIRED", 400) is TokenVerdict.REJECTED
    assert acme.classify_token_response("unspecified_error", "Try later", 400) is TokenVerdict.UNKNOWN

"""Identity settings refuse incoherent or dangerous values with a message naming the setting; the claim mapping
uses only what the IdP vouches for."""

from __future__ import annotations

import pytest

from server.identity.people import SignInRefused, person_from_claims
from server.settings import ConfigError, Settings

pytestmark = pytest.mark.no_sign_in  # these tests set the sign-in settings themselves
ISSUER = {"oidc_issuer": "http://127.0.0.1:9", "oidc_client_id": "c", "oidc_client_secret": "s"}


@pytest.mark.parametrize(
    "values, names",
    [
        ({"oidc_issuer": "http://idp.example.com", "oidc_client_id": "c"}, "GRANTKEEPER_OIDC_ISSUER"),
        ({"oidc_issuer": "https://idp.example.com"}, "GRANTKEEPER_OIDC_CLIENT_ID"),
        ({"mcp_authorization": "grantkeeper"}, "GRANTKEEPER_OIDC_ISSUER"),
        ({"mcp_authorization": "external"}, "GRANTKEEPER_MCP_EXTERNAL_ISSUER"),
        (
            {
                "mcp_authorization": "external",
                "mcp_external_issuer": "https://as.example",
                "mcp_external_algorithms": "RS256,none",
            },
            "GRANTKEEPER_MCP_EXTERNAL_ALGORITHMS",
        ),
        ({"mcp_authorization": "external", "mcp_external_issuer": "http://as.example"}, "GRANTKEEPER_MCP_EXTERNAL_ISSUER"),
    ],
)
def test_incoherent_identity_settings_are_refused(env, values, names):
    with pytest.raises((ConfigError, ValueError), match=names):
        Settings(**values)


def test_the_sign_in_client_is_not_mistaken_for_a_provider(env, monkeypatch):
    monkeypatch.setenv("GRANTKEEPER_OIDC_CLIENT_ID", "c")
    monkeypatch.setenv("GRANTKEEPER_OIDC_CLIENT_SECRET", "sekrit-value")
    monkeypatch.setenv("GRANTKEEPER_OIDC_ISSUER", "http://127.0.0.1:9")
    settings = Settings()
    assert "oidc" not in settings.providers and settings.sign_in_enabled
    assert "sekrit-value" not in repr(settings)


def claims(**extra):
    return {"sub": "u-1", "email": "ada@acme.test", "email_verified": True, "groups": ["eng"], **extra}


def test_claims_map_to_org_and_user_under_the_policy(env):
    settings = Settings(**ISSUER, oidc_org="acme", admin_emails="ADA@acme.test")
    person = person_from_claims(claims(), settings)
    assert (person.org, person.user, person.is_admin) == ("acme", "ada@acme.test", True)
    unverified = person_from_claims(claims(email_verified=False), settings)
    assert (unverified.user, unverified.is_admin) == ("u-1", False)  # an unverified email proves nothing
    by_claim = Settings(**ISSUER, oidc_org_claim="tenant", oidc_user_claim="preferred_username")
    assert person_from_claims(claims(tenant="globex", preferred_username="ada"), by_claim).org == "globex"


@pytest.mark.parametrize("bad", [{"tenant": None}, {"tenant": "a/b"}, {"tenant": "x" * 500}, {"tenant": 7}, {"sub": ""}])
def test_unusable_claims_refuse_sign_in(env, bad):
    settings = Settings(**ISSUER, oidc_org_claim="tenant")
    with pytest.raises(SignInRefused):
        person_from_claims(claims(**{"tenant": "globex", **bad}), settings)


def test_domain_and_group_rules(env):
    settings = Settings(**ISSUER, oidc_allowed_email_domains="acme.test", oidc_required_group="eng")
    assert person_from_claims(claims(), settings).user == "ada@acme.test"
    for bad in (claims(email="ada@evil.test"), claims(email_verified=False), claims(groups="eng"), claims(groups=[])):
        with pytest.raises(SignInRefused):
            person_from_claims(bad, settings)

"""A checked declaration, with its discovery metadata when it has an issuer, becomes a `DeclaredProvider`: explicit
endpoints win over discovered ones, the client authentication method is chosen among those the server supports,
and an OpenID Connect provider must have keys to verify its id_tokens.

    declared = declared_providers(settings)        # {"acme": DeclaredProvider(...)}
"""

from __future__ import annotations

from providers.custom import DeclaredProvider, ProviderDeclaration
from providers.custom.declaration import ClientAuthMethod
from server.custom_providers.discovery import AuthorizationServerMetadata, fetch_metadata
from server.custom_providers.reading import read_declarations
from server.settings import ConfigError, Settings

# In order of preference (RFC 6749 §2.3.1).
SUPPORTED_AUTH_METHODS: tuple[ClientAuthMethod, ...] = ("client_secret_basic", "client_secret_post")
# Chosen only when declared: it needs a key the operator configures (GRANTKEEPER_<NAME>_CLIENT_PRIVATE_KEY_FILE).
KEY_AUTH_METHODS: tuple[ClientAuthMethod, ...] = ("private_key_jwt",)


def declared_providers(settings: Settings) -> dict[str, DeclaredProvider]:
    """Every declared provider, ready to become a connector. Fetches the discovery metadata of those with an
    issuer; `read_declarations` alone checks the configuration without the network."""
    declarations = read_declarations(settings)
    declared = {}
    for name, (source, declaration) in declarations.items():
        metadata = fetch_metadata(name, declaration) if declaration.issuer else None
        declared[name] = _provider(name, source, declaration, metadata)
    return declared


def _provider(
    name: str, source: str, declaration: ProviderDeclaration, metadata: AuthorizationServerMetadata | None
) -> DeclaredProvider:
    where = f"{source}: custom provider {name!r}"
    authorize = declaration.endpoint("authorize") or (metadata.authorization_endpoint if metadata else None)
    token = declaration.endpoint("token") or (metadata.token_endpoint if metadata else None)
    revoke = declaration.endpoint("revoke") or (metadata.revocation_endpoint if metadata else None)
    if authorize is None:
        raise ConfigError(f"{where}: the discovery metadata has no authorization_endpoint; set it in the declaration")
    if token is None:
        raise ConfigError(f"{where}: the discovery metadata has no token_endpoint; set it in the declaration")
    auth_method = declaration.client_auth_method
    if declaration.openid and (declaration.jwks_url or (metadata and metadata.jwks_uri)) is None:
        raise ConfigError(f"{where}: openid = true needs the issuer's jwks_uri (from discovery, or jwks_url)")
    if metadata is not None:
        supported = metadata.token_endpoint_auth_methods_supported
        if auth_method is None:
            auth_method = next((m for m in SUPPORTED_AUTH_METHODS if m in supported), None)
            if auth_method is None:
                raise ConfigError(
                    f"{where}: the token endpoint supports none of {', '.join(SUPPORTED_AUTH_METHODS)} "
                    f"(it offers {', '.join(supported)[:200]})"
                )
        elif auth_method not in supported:
            raise ConfigError(
                f"{where}: client_auth_method {auth_method!r} is not among the server's "
                f"token_endpoint_auth_methods_supported ({', '.join(supported)[:200]})"
            )
    scopes_supported = metadata.scopes_supported if metadata else None
    return DeclaredProvider.from_declaration(
        name,
        declaration,
        authorize_url=authorize,
        token_url=token,
        revoke_url=revoke,
        client_auth_method=auth_method,
        jwks_uri=metadata.jwks_uri if metadata else None,
        authorization_response_iss=bool(metadata and metadata.authorization_response_iss_parameter_supported),
        offline_access_supported=scopes_supported is None or "offline_access" in scopes_supported,
    )

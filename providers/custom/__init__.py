"""Providers declared in configuration instead of code. A declaration is plain data (TOML or JSON; a complete one
in `docs/custom-providers.md`); this package turns it into a provider and its tools' requests:

- `declaration.py`: what an operator declares (endpoints, OAuth details, tools), checked when read;
- `params.py`: one tool argument, and the pydantic type it becomes;
- `vocabulary.py`: the provider's error vocabulary, where it departs from RFC 6749/6750;
- `provider.py`: `DeclaredProvider`, its spec and its classifier;
- `request.py`: `build_call`, one declared tool call as one API request.

Loading declarations from the settings, URL checks and RFC 8414 discovery live in `server/custom_providers/`;
registering the tools in `tools/custom.py`.

    provider = DeclaredProvider.from_declaration("acme", declaration, token_url="https://auth.acme.example/token",
                                                 authorize_url="https://auth.acme.example/authorize")
    call = build_call(declaration.tools[0], {"project_id": "p-1"}, api_base_url="https://api.acme.example/v1")
"""

from providers.base import UnsafeArgument
from providers.custom.declaration import (
    DEFAULT_MAX_RESPONSE_BYTES,
    PROVIDER_NAME,
    ProbeDeclaration,
    ProviderDeclaration,
    ToolDeclaration,
)
from providers.custom.params import ParamDeclaration
from providers.custom.provider import DeclaredProvider
from providers.custom.request import build_call
from providers.custom.vocabulary import ErrorVocabulary

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "PROVIDER_NAME",
    "DeclaredProvider",
    "ErrorVocabulary",
    "ParamDeclaration",
    "ProbeDeclaration",
    "ProviderDeclaration",
    "ToolDeclaration",
    "UnsafeArgument",
    "build_call",
]

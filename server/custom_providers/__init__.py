"""Providers declared in configuration: read from `[custom_providers.<name>]` in config.toml and from the file
named by GRANTKEEPER_PROVIDERS_FILE (TOML or JSON, same shape), checked (`reading.py`), completed by RFC 8414
discovery where an `issuer` is given (`discovery.py`), and turned into `DeclaredProvider`s (`resolve.py`).

Every problem is a `ConfigError` that names the source, the provider and the field, and never echoes a value
that could be a secret.

    declared = declared_providers(settings)        # {"acme": DeclaredProvider(...)}; fetches discovery metadata
"""

from server.custom_providers.reading import read_declarations
from server.custom_providers.resolve import declared_providers

__all__ = ["declared_providers", "read_declarations"]

"""Fixtures for the tools of declared providers: the `acme` declaration served by a fresh OAuth 2.0 simulator."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from simulators import OAuth2Simulator, SimulatorServer
from tests.support.custom import ACME_CLIENT, acme_declaration, write_config


@pytest.fixture
def declare(env, oauth2_server: SimulatorServer, isolated_environment, monkeypatch) -> Callable[..., OAuth2Simulator]:
    """Serve a fresh simulator (with `simulator` options) and declare `acme` for it in config.toml."""
    for key, value in ACME_CLIENT.items():
        monkeypatch.setenv(key, value)

    def declare(*, extra: str = "", **simulator: object) -> OAuth2Simulator:
        oauth2_server.app = OAuth2Simulator(**simulator)
        write_config(isolated_environment, acme_declaration(oauth2_server.url, extra=extra))
        return oauth2_server.app

    return declare

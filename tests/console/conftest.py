"""The web app, the account owner's browser, and the CLI in-process, for the console's tests."""

from collections.abc import Callable, Iterator

import pytest

from server.cli import main
from tests.reauth.conftest import user, web  # noqa: F401 - fixtures
from tests.support.logs import logging_restored


@pytest.fixture
def cli(env: dict[str, str]) -> Iterator[Callable[..., int]]:
    with logging_restored():
        yield lambda *argv: main(list(argv))

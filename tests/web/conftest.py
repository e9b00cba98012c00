"""The web app and the account owner's browser (shared with the re-authorization tests), and the CLI."""

from collections.abc import Callable, Iterator

import pytest

from server.cli import main
from tests.reauth.conftest import user, web  # noqa: F401 - fixtures
from tests.support.logs import logging_restored


@pytest.fixture
def cli(env: dict[str, str]) -> Iterator[Callable[..., int]]:
    """`grantkeeper …` in-process, against the test's vault; its logging set-up is undone afterwards."""
    with logging_restored():
        yield lambda *argv: main(list(argv))

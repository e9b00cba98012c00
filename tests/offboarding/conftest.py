"""The web app and the account owner's browser, shared with the re-authorization tests."""

from tests.reauth.conftest import user, web  # noqa: F401 - fixtures

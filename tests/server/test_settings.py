"""Settings: environment over config.toml, provider overrides, and clear refusals of unsafe values."""

from __future__ import annotations

import pytest

from server.settings import ConfigError, Settings


def test_config_file_is_read_and_the_environment_wins(isolated_environment, monkeypatch):
    isolated_environment.mkdir(parents=True, exist_ok=True)
    (isolated_environment / "config.toml").write_text(
        'tool_names = "dotted"\norg = "from-file"\n'
        '[providers.github]\nclient_id = "file-client"\napi_base_url = "http://127.0.0.1:9999"\n'
    )
    monkeypatch.setenv("GRANTKEEPER_ORG", "from-env")
    monkeypatch.setenv("GRANTKEEPER_GITHUB_CLIENT_SECRET", "env-secret")

    settings = Settings()

    assert settings.tool_names == "dotted"
    assert settings.org == "from-env"
    github = settings.provider("github")
    assert (github.client_id, github.client_secret, github.api_base_url) == ("file-client", "env-secret", "http://127.0.0.1:9999")
    assert "env-secret" not in repr(settings)


def test_plain_http_to_a_remote_host_is_refused(isolated_environment, monkeypatch):
    monkeypatch.setenv("GRANTKEEPER_SLACK_API_BASE_URL", "http://evil.example/api")
    with pytest.raises(ValueError, match="non-loopback"):
        Settings()


def test_credentials_inside_a_base_url_are_refused(isolated_environment, monkeypatch):
    monkeypatch.setenv("GRANTKEEPER_SLACK_OAUTH_BASE_URL", "https://user:pw@slack.example")
    with pytest.raises(ValueError, match="credentials"):
        Settings()


def test_a_malformed_config_file_names_the_file(isolated_environment):
    isolated_environment.mkdir(parents=True, exist_ok=True)
    (isolated_environment / "config.toml").write_text("tool_names = [unclosed")
    with pytest.raises(ConfigError, match=r"config\.toml: not valid TOML"):
        Settings()


@pytest.mark.parametrize(("deadline", "cap"), [("30", "30"), ("45", "30"), ("10", "5")])
def test_a_refresh_deadline_not_shorter_than_the_lease_cap_is_refused(isolated_environment, monkeypatch, deadline, cap):
    monkeypatch.setenv("GRANTKEEPER_REFRESH_TIMEOUT_SECONDS", deadline)
    monkeypatch.setenv("GRANTKEEPER_LEASE_MAX_SECONDS", cap)
    monkeypatch.setenv("GRANTKEEPER_LEASE_SECONDS", "1")
    with pytest.raises(
        ValueError,
        match=r"GRANTKEEPER_REFRESH_TIMEOUT_SECONDS .* must be shorter than "
        r"GRANTKEEPER_LEASE_MAX_SECONDS",
    ) as refused:
        Settings()
    assert isinstance(refused.value.errors()[0]["ctx"]["error"], ConfigError)


def test_a_lease_period_longer_than_its_cap_is_refused(isolated_environment, monkeypatch):
    monkeypatch.setenv("GRANTKEEPER_LEASE_SECONDS", "40")
    with pytest.raises(
        ValueError,
        match=r"GRANTKEEPER_LEASE_SECONDS .* must not be longer than "
        r"GRANTKEEPER_LEASE_MAX_SECONDS",
    ):
        Settings()


def test_the_default_refresh_fits_its_lease(isolated_environment):
    settings = Settings()
    assert settings.lease_seconds < settings.refresh_timeout_seconds < settings.lease_max_seconds


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HTTP_HEADER_TIMEOUT_SECONDS", "0"),
        ("HTTP_HEADER_TIMEOUT_SECONDS", "-1"),
        ("HTTP_HEADER_TIMEOUT_SECONDS", "soon"),
        ("HTTP_KEEP_ALIVE_SECONDS", "0"),
        ("HTTP_MAX_HEADER_BYTES", "10"),
        ("HTTP_MAX_HEADER_BYTES", "1e12"),
        ("HTTP_MAX_CONCURRENCY", "0"),
        ("MCP_SESSION_IDLE_SECONDS", "0"),
        ("MAGIC_LINK_RETENTION_SECONDS", "-5"),
        ("HOUSEKEEPING_INTERVAL_SECONDS", "0"),
        ("METRICS_PORT", "70000"),
        ("METRICS_PORT", "-1"),
    ],
)
def test_absurd_web_limits_are_refused_naming_the_setting(isolated_environment, monkeypatch, name, value):
    from pydantic import ValidationError

    monkeypatch.setenv(f"GRANTKEEPER_{name}", value)
    with pytest.raises(ValidationError, match=name.lower()):
        Settings()


def test_the_metrics_token_never_shows_in_the_settings_repr(isolated_environment, monkeypatch):
    monkeypatch.setenv("GRANTKEEPER_METRICS_TOKEN", "metrics-secret-4c1d")
    assert Settings().metrics_token == "metrics-secret-4c1d"
    assert "metrics-secret-4c1d" not in repr(Settings())


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("GRANTKEEPER_LOG_LEVEL", "banana", "GRANTKEEPER_LOG_LEVEL must be one of"),
        ("GRANTKEEPER_DATABASE_URL", "mysql://root:hunter2@db/grants", "GRANTKEEPER_DATABASE_URL must be a sqlite"),
        ("GRANTKEEPER_PUBLIC_URL", "not-a-url-hunter2", "GRANTKEEPER_PUBLIC_URL must be an absolute"),
        ("GRANTKEEPER_LEASE_MAX_SECONDS", "5", "GRANTKEEPER_REFRESH_TIMEOUT_SECONDS (10) must be shorter"),
    ],
)
def test_a_malformed_setting_is_refused_naming_it_without_echoing_the_value(
    isolated_environment, monkeypatch, name, value, message
):
    monkeypatch.setenv(name, value)
    from server.cli import _config_message  # what the command prints

    with pytest.raises(ValueError) as refused:
        Settings()
    printed = _config_message(refused.value)
    assert message in printed and "hunter2" not in printed


def test_an_empty_home_is_refused_instead_of_using_the_current_directory(isolated_environment, monkeypatch):
    monkeypatch.setenv("GRANTKEEPER_HOME", "")
    with pytest.raises(ConfigError, match="GRANTKEEPER_HOME is set but empty"):
        Settings()


def test_links_follow_the_listen_port_unless_a_public_url_is_set(isolated_environment, monkeypatch):
    monkeypatch.setenv("GRANTKEEPER_LISTEN_PORT", "9123")
    assert Settings().public_url == "http://127.0.0.1:9123"
    monkeypatch.setenv("GRANTKEEPER_LISTEN_HOST", "0.0.0.0")
    assert Settings().public_url == "http://127.0.0.1:9123"
    monkeypatch.setenv("GRANTKEEPER_PUBLIC_URL", "https://keys.example.com/")
    assert Settings().public_url == "https://keys.example.com"

"""Run provider simulators in the foreground for agent developers.

python -m simulators slack|github|google|zendesk|oauth2|oidc|all [--host 127.0.0.1] [--port N]
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from .base import ProviderSimulator
from .github import GitHubSimulator
from .google import GoogleSimulator
from .oauth2 import OAuth2Simulator
from .oidc import OIDCSimulator
from .server import SimulatorServer
from .slack import SlackSimulator
from .zendesk import ZendeskSimulator

SIMULATORS = {"slack": SlackSimulator, "github": GitHubSimulator, "google": GoogleSimulator, "zendesk": ZendeskSimulator}


# Where each simulator serves its provider's API below its root, as the real API base does (Slack: slack.com/api).
API_PATHS = {"slack": "/api"}


def settings_for(name: str, simulator: ProviderSimulator, url: str) -> list[str]:
    """The grantkeeper settings that point a connector at this simulator."""
    prefix = f"GRANTKEEPER_{name.upper()}"
    return [
        f"{prefix}_CLIENT_ID={simulator.client_id}",
        f"{prefix}_CLIENT_SECRET={simulator.client_secret}",
        f"{prefix}_API_BASE_URL={url}{API_PATHS.get(name, '')}",
        f"{prefix}_OAUTH_BASE_URL={url}",
    ]


def _describe(simulator: ProviderSimulator, url: str) -> str:
    name = next((key for key, cls in SIMULATORS.items() if isinstance(simulator, cls)), None)
    settings = [f"  {line}" for line in settings_for(name, simulator, url)] if name else []
    return "\n".join(
        [
            f"{simulator.provider_title} simulator: {url}",
            f"  client_id={simulator.client_id} client_secret={simulator.client_secret}",
            *(["  settings (export these before `grantkeeper serve`):", *settings] if settings else []),
            f"  authorize: {url}{simulator.authorize_path}",
            f"  token:     {url}{simulator.token_path}",
            f"  control:   {url}/_sim/stats, /_sim/faults, /_sim/grants (POST {{}} mints tokens for the default user)",
            f"  default identity: {simulator.default_identity}",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulators", description=__doc__.splitlines()[0])
    parser.add_argument("provider", choices=[*SIMULATORS, "oauth2", "oidc", "all"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port; with 'all', the others get port+1, port+2, …")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")

    if args.provider == "oidc":
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        _serve_identity_provider(args, stop)
        return
    # "all" means the built-in providers; oauth2 is the generic one that declared providers are tried against.
    chosen = list(SIMULATORS) if args.provider == "all" else [args.provider]
    simulators: list[ProviderSimulator] = [OAuth2Simulator() if name == "oauth2" else SIMULATORS[name]() for name in chosen]

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    servers = []
    try:
        for offset, simulator in enumerate(simulators):
            port = args.port + offset if args.port else 0
            server = SimulatorServer(simulator, args.host, port, log_level=args.log_level).start()
            servers.append(server)
            print(_describe(simulator, server.url), flush=True)
        print("Press Ctrl+C to stop.", flush=True)
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for server in servers:
            server.stop()


def _serve_identity_provider(args: argparse.Namespace, stop: threading.Event) -> None:
    simulator = OIDCSimulator()
    with SimulatorServer(simulator, args.host, args.port, log_level=args.log_level) as server:
        simulator.issuer = server.url
        people = ", ".join(f"{key} <{claims.get('email')}>" for key, claims in simulator.people.items())
        print(
            "\n".join(
                [
                    f"OpenID Connect provider simulator: {server.url}",
                    f"  client_id={simulator.client_id} client_secret={simulator.client_secret}",
                    f"  discovery: {server.url}/.well-known/openid-configuration",
                    f"  people:    {people}",
                    f"  control:   {server.url}/_sim/stats, /_sim/rotate-keys, /_sim/people, /_sim/forge",
                    "Press Ctrl+C to stop.",
                ]
            ),
            flush=True,
        )
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()

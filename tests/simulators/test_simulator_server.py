"""SimulatorServer lifecycle and the ``python -m simulators`` entry point."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import httpx2
import pytest
from sim_helpers import simulators_from_the_command_line

from simulators import GitHubSimulator, SimulatorServer, SlackSimulator

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_server_serves_on_a_loopback_url_and_refuses_connections_after_stop():
    server = SimulatorServer(SlackSimulator()).start()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url)
    assert httpx2.get(f"{server.url}/_sim/stats").status_code == 200
    server.stop()
    assert not server.running
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(f"{server.url}/_sim/stats")


def test_server_reports_a_port_that_is_already_taken():
    with SimulatorServer(SlackSimulator()) as first, pytest.raises(RuntimeError, match="failed to start"):
        SimulatorServer(GitHubSimulator(), port=first.port).start()


def test_swapping_the_app_serves_the_new_simulator_on_the_same_url():
    with SimulatorServer(SlackSimulator()) as server:
        server.app = GitHubSimulator()
        assert httpx2.get(f"{server.url}/user").status_code == 401


def test_async_context_manager_starts_and_stops_the_server():
    async def scenario() -> int:
        async with SimulatorServer(SlackSimulator()) as server, httpx2.AsyncClient(base_url=server.url) as client:
            return (await client.get("/_sim/stats")).status_code

    assert asyncio.run(scenario()) == 200


def test_module_entry_point_prints_urls_and_credentials_and_stops_on_sigterm():
    with simulators_from_the_command_line("all") as (process, output):
        assert "client_id=sim-slack-client client_secret=sim-slack-secret" in output
        assert "client_id=sim-github-client client_secret=sim-github-secret" in output
        assert "client_id=sim-google-client client_secret=sim-google-secret" in output
        assert "client_id=sim-zendesk-client client_secret=sim-zendesk-secret" in output
        urls = re.findall(r"simulator: (http://\S+)", output)
        assert len(urls) == 4
        assert all(httpx2.get(f"{url}/_sim/stats").status_code == 200 for url in urls)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0

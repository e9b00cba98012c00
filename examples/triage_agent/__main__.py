"""`python -m examples.triage_agent`: run the triage agent until interrupted (or until idle, for scripts).

Over stdio it starts `grantkeeper serve` itself with this environment's GRANTKEEPER_* settings; with --url it
talks streamable HTTP to a running server, authenticated by the API key in the variable --api-key-env names
(never on the command line, where `ps` would show it)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio

from examples.triage_agent.agent import AgentConfig, TriageAgent
from examples.triage_agent.classify import classifier_from_environment
from examples.triage_agent.connect import http_session, stdio_session
from examples.triage_agent.state import StateError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m examples.triage_agent", description=__doc__)
    parser.add_argument("--channel", required=True, help="Slack channel id to watch, e.g. C0123BUGS")
    parser.add_argument("--repo", required=True, help="GitHub repository owner/name for the issues")
    parser.add_argument(
        "--state",
        type=Path,
        default=Path("triage-agent-state.json"),
        help="where the cursor and the queue are kept (default: %(default)s)",
    )
    parser.add_argument("--owner-channel", help="Slack channel id for 'please reconnect' notices")
    parser.add_argument("--poll-seconds", type=float, default=5.0)
    parser.add_argument("--reauth-check-seconds", type=float, default=10.0)
    parser.add_argument("--url", help="grantkeeper's streamable HTTP endpoint, e.g. http://127.0.0.1:8765/mcp")
    parser.add_argument("--api-key-env", default="TRIAGE_API_KEY", help="variable holding the API key for --url")
    parser.add_argument(
        "--exit-when-idle",
        type=int,
        metavar="ROUNDS",
        default=0,
        help="exit after this many rounds in a row with nothing queued and nothing new (0: never)",
    )
    parser.add_argument("--json", action="store_true", help="print events and the final counts as JSON lines")
    return parser


def _printer(as_json: bool):
    def observe(kind: str, detail: dict[str, Any]) -> None:
        if as_json:
            print(json.dumps({"event": kind, **detail}, default=str), flush=True)
        elif kind == "reauth_required":
            print(f"!! {detail['connector']} needs its owner: open {detail['link']} ({detail['reason']})", flush=True)
        elif kind in ("issue_filed", "reply_posted", "report_queued", "reconnected", "blocked", "call_raised"):
            print(f"{kind}: " + ", ".join(f"{k}={v}" for k, v in detail.items()), flush=True)

    return observe


async def _run(args: argparse.Namespace) -> int:
    config = AgentConfig(
        channel=args.channel,
        repo=args.repo,
        state_path=args.state,
        owner_channel=args.owner_channel,
        poll_seconds=args.poll_seconds,
        reauth_check_seconds=args.reauth_check_seconds,
    )
    if args.url:
        key = os.environ.get(args.api_key_env)
        if not key:
            print(f"triage-agent: set {args.api_key_env} to a grantkeeper API key (grantkeeper keys create)", file=sys.stderr)
            return 2
        opened = http_session(args.url, key)
    else:
        opened = stdio_session(env=dict(os.environ))
    stop = anyio.Event()
    async with opened as session:
        try:
            agent = TriageAgent(session, config, classifier=classifier_from_environment(), observe=_printer(args.json))
        except StateError as exc:
            print(f"triage-agent: {exc}", file=sys.stderr)
            return 2

        async def watch_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    stop.set()
                    return

        async with anyio.create_task_group() as group:
            group.start_soon(watch_signals)
            idle = 0
            while not stop.is_set():
                seen, done = agent.stats.messages_read, len(agent.state.done)
                await agent.step()
                quiet = agent.pending == 0 and agent.stats.messages_read == seen and len(agent.state.done) == done
                idle = idle + 1 if quiet and not agent.blocks else 0
                if args.exit_when_idle and idle >= args.exit_when_idle:
                    break
                with anyio.move_on_after(agent.idle_seconds()):
                    await stop.wait()
            group.cancel_scope.cancel()
    print(json.dumps({"event": "stopped", "pending": agent.pending, **agent.stats.as_dict()}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    return anyio.run(_run, _parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

"""Recognising bug reports: the rules, and the optional model behind the Anthropic or an OpenAI-compatible API —
exercised against a model server on loopback that answers well, slowly, hugely, wrongly or not at all. Whatever
it does, the agent gets an answer (the rules' when the model's is unusable) and the key only goes in its header."""

from __future__ import annotations

import json
import threading

import anyio
import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from examples.triage_agent import classify
from examples.triage_agent.classify import LlmClassifier, LlmSettings, RuleClassifier
from simulators import SimulatorServer

pytestmark = pytest.mark.anyio
KEY = "sk-test-0123456789"


class ModelServer:
    def __init__(self) -> None:
        self.mode = "ok"
        self.requests: list[dict] = []
        self.release = threading.Event()
        self.app = Starlette(
            routes=[
                Route("/v1/messages", self.anthropic, methods=["POST"]),
                Route("/v1/chat/completions", self.openai, methods=["POST"]),
            ]
        )

    async def _answer(self, request: Request, authorized: bool) -> str | Response:
        body = json.loads(await request.body())
        self.requests.append({"headers": dict(request.headers), "body": body})
        if not authorized:
            return JSONResponse({"error": "unauthorized"}, 401)
        match self.mode:
            case "slow":
                await anyio.to_thread.run_sync(self.release.wait, 10)
            case "huge":
                return Response(b'{"content": [{"text": "' + b"y" * 200_000 + b'"}]}', media_type="application/json")
            case "garbage":
                return Response(b"<html>not json", media_type="text/html")
            case "maybe":
                return "maybe"
            case "error":
                return JSONResponse({"error": "overloaded"}, 529)
        prompt = body["messages"][0]["content"]
        return "Yes." if "checkout" in prompt.lower() else "no"

    async def anthropic(self, request: Request) -> Response:
        answer = await self._answer(request, request.headers.get("x-api-key") == KEY)
        return answer if isinstance(answer, Response) else JSONResponse({"content": [{"type": "text", "text": answer}]})

    async def openai(self, request: Request) -> Response:
        answer = await self._answer(request, request.headers.get("authorization") == f"Bearer {KEY}")
        if isinstance(answer, Response):
            return answer
        return JSONResponse({"choices": [{"message": {"role": "assistant", "content": answer}}]})


@pytest.fixture
def model():
    server = ModelServer()
    with SimulatorServer(server.app) as running:
        server.url = running.url
        yield server
        server.release.set()


async def test_rules_recognise_reports_and_leave_chatter_alone():
    rules = RuleClassifier()
    assert await rules.is_bug_report("Checkout fails on Safari")
    assert await rules.is_bug_report("Error 500 on /api/orders")
    assert not await rules.is_bug_report("Standup moves to 10:15")
    assert not await rules.is_bug_report("Thanks, the error is gone now")


def test_the_model_is_off_unless_configured_with_a_key():
    assert LlmSettings.from_environment({}) is None
    assert LlmSettings.from_environment({"TRIAGE_LLM": "anthropic"}) is None
    assert LlmSettings.from_environment({"ANTHROPIC_API_KEY": KEY}) is None
    chosen = LlmSettings.from_environment({"TRIAGE_LLM": "openai", "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": "http://x/v1"})
    assert chosen is not None and chosen.api == "openai" and chosen.base_url == "http://x/v1"
    assert KEY not in repr(chosen.model)


@pytest.mark.parametrize("api", ["anthropic", "openai"])
async def test_the_model_decides_when_it_answers_yes_or_no(model, api):
    base = model.url if api == "anthropic" else f"{model.url}/v1"
    classifier = LlmClassifier(LlmSettings(api, KEY, "test-model", base))
    try:
        assert await classifier.is_bug_report("The checkout page looks odd")  # no rule word: the model said yes
        assert not await classifier.is_bug_report("Error 500 everywhere")  # a rule word, but the model said no
    finally:
        await classifier.aclose()
    assert classifier.fallbacks == 0
    sent = model.requests[0]
    assert sent["body"]["model"] == "test-model" and sent["body"]["max_tokens"] == 5
    assert KEY not in json.dumps(sent["body"])


@pytest.mark.parametrize("mode", ["huge", "garbage", "maybe", "error", "slow"])
async def test_an_unusable_model_answer_falls_back_to_the_rules(model, mode, monkeypatch):
    monkeypatch.setattr(classify, "LLM_TIMEOUT_SECONDS", 0.5)
    model.mode = mode
    classifier = LlmClassifier(LlmSettings("anthropic", KEY, "test-model", model.url))
    try:
        assert await classifier.is_bug_report("Error 500 on /api/orders")
        assert not await classifier.is_bug_report("Standup moves to 10:15")
    finally:
        await classifier.aclose()
        model.release.set()
    assert classifier.fallbacks == 2


async def test_a_wrong_key_falls_back_and_huge_messages_are_cut(model):
    classifier = LlmClassifier(LlmSettings("anthropic", "sk-wrong", "test-model", model.url))
    try:
        assert await classifier.is_bug_report("crash " * 10_000)
    finally:
        await classifier.aclose()
    assert classifier.fallbacks == 1
    assert len(model.requests[0]["body"]["messages"][0]["content"]) < classify.LLM_MAX_MESSAGE_CHARS + 500


async def test_an_unreachable_model_falls_back():
    classifier = LlmClassifier(LlmSettings("openai", KEY, "m", "http://127.0.0.1:9/v1"), http=httpx2.AsyncClient(timeout=2))
    try:
        assert await classifier.is_bug_report("Login is broken")
    finally:
        await classifier.aclose()
    assert classifier.fallbacks == 1

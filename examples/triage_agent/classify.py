"""Is this Slack message a bug report? Rules by default; optionally an LLM (Anthropic's Messages API or any
OpenAI-compatible chat completions API) when a key is configured — falling back to the rules whenever the
model cannot be asked or answers something else than yes or no."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Protocol

import anyio
import httpx2

BUG_WORDS = re.compile(
    r"\b(bug|broken|breaks?|crash(es|ed|ing)?|error|exception|fails?|failing|failed|regression|"
    r"500|404|stack ?trace|doesn'?t work|does not work|not working|can'?t|cannot|wrong|timeout|hangs?)\b",
    re.IGNORECASE,
)
NOT_A_REPORT = re.compile(r"^\s*(thanks|thank you|fixed|resolved|closing|\+1|lgtm)\b", re.IGNORECASE)
LLM_TIMEOUT_SECONDS = 15.0
LLM_MAX_RESPONSE_BYTES = 64 * 1024
LLM_MAX_MESSAGE_CHARS = 4000
PROMPT = (
    "You triage a #bug-reports channel. Answer with exactly one word, yes or no: is the following message "
    "a report of a software bug (something broken, failing, crashing, erroring or behaving wrongly)?\n\n"
    "Message:\n{text}"
)


class Classifier(Protocol):
    name: str

    async def is_bug_report(self, text: str) -> bool: ...


class RuleClassifier:
    name = "rules"

    async def is_bug_report(self, text: str) -> bool:
        return bool(BUG_WORDS.search(text)) and not NOT_A_REPORT.search(text)


@dataclass
class LlmSettings:
    api: str  # "anthropic" or "openai"
    api_key: str
    model: str
    base_url: str

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> LlmSettings | None:
        """TRIAGE_LLM=anthropic|openai turns the model on; without it (the default) only the rules are used."""
        env = os.environ if environ is None else environ
        api = env.get("TRIAGE_LLM", "").strip().lower()
        if api == "anthropic" and env.get("ANTHROPIC_API_KEY"):
            return cls(
                "anthropic",
                env["ANTHROPIC_API_KEY"],
                env.get("TRIAGE_LLM_MODEL", "claude-haiku-4-5"),
                env.get("ANTHROPIC_BASE_URL", "https://api.anthropic.com"),
            )
        if api == "openai" and env.get("OPENAI_API_KEY"):
            return cls(
                "openai",
                env["OPENAI_API_KEY"],
                env.get("TRIAGE_LLM_MODEL", "gpt-4o-mini"),
                env.get("OPENAI_BASE_URL", "https://api.openai.com/v1"),
            )
        return None


class LlmClassifier:
    """Asks the model; on any failure (network, status, size, shape, an answer other than yes/no) uses the rules."""

    def __init__(self, settings: LlmSettings, http: httpx2.AsyncClient | None = None):
        self.settings = settings
        self.name = f"llm:{settings.api}:{settings.model}"
        self.fallback = RuleClassifier()
        self.fallbacks = 0
        self._http = http or httpx2.AsyncClient(timeout=httpx2.Timeout(LLM_TIMEOUT_SECONDS))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def is_bug_report(self, text: str) -> bool:
        try:
            with anyio.fail_after(LLM_TIMEOUT_SECONDS):  # a total deadline; httpx2's timeouts are per phase
                answer = await self._ask(PROMPT.format(text=text[:LLM_MAX_MESSAGE_CHARS]))
        except (TimeoutError, httpx2.HTTPError, ValueError, KeyError, IndexError, TypeError):
            answer = None
        verdict = (answer or "").strip().strip(".!").lower()
        if verdict in ("yes", "no"):
            return verdict == "yes"
        self.fallbacks += 1
        return await self.fallback.is_bug_report(text)

    async def _ask(self, prompt: str) -> str:
        s = self.settings
        if s.api == "anthropic":
            url = f"{s.base_url.rstrip('/')}/v1/messages"
            headers = {"x-api-key": s.api_key, "anthropic-version": "2023-06-01"}
            payload = {"model": s.model, "max_tokens": 5, "messages": [{"role": "user", "content": prompt}]}
        else:
            url = f"{s.base_url.rstrip('/')}/chat/completions"
            headers = {"Authorization": f"Bearer {s.api_key}"}
            payload = {"model": s.model, "max_tokens": 5, "messages": [{"role": "user", "content": prompt}]}
        async with self._http.stream("POST", url, headers=headers, json=payload) as response:
            response.raise_for_status()
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > LLM_MAX_RESPONSE_BYTES:
                    raise ValueError("model answer too large")
        data = json.loads(bytes(body))
        if s.api == "anthropic":
            return str(data["content"][0]["text"])
        return str(data["choices"][0]["message"]["content"])


def classifier_from_environment() -> Classifier:
    settings = LlmSettings.from_environment()
    return LlmClassifier(settings) if settings else RuleClassifier()

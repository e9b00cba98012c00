"""One tool call, top to bottom: caller → connected account → authenticated, classified, retried provider
requests → a structured result. Nothing here knows a provider by name."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import httpx2
from pydantic import ValidationError

from providers.base import ApiCall, UnsafeArgument, json_body
from server import failures
from server.bounded_read import ResponseTooLarge, read_response_bounded
from server.cache import RevalidatingCache
from server.connectors import Connector
from server.deadlines import CallDeadlineError
from server.lifecycle.account_status import change_status
from server.lifecycle.auth import ProviderAuth
from server.lifecycle.tokens import TokenManager
from server.monitoring import tracing
from server.monitoring.event_kinds import EventKind, Severity
from server.monitoring.events import EventRecorder
from server.monitoring.logging import get_logger
from server.pools import ConnectorPool, ConnectorPools
from server.results import FailureResult, Ok, ReauthRequired, failure_result
from server.retry_policy import RetryPolicy
from server.settings import Settings
from server.vault import AccountExistsError, AccountStatus, ConnectedAccount, Vault, VaultIntegrityError
from server.vault.crypto import new_secret_token
from server.vault.models import MagicLink
from server.vault.threads import in_vault_thread

T = TypeVar("T", bound=Ok)
ACCOUNT_CACHE_SECONDS = 2.0


DEFAULT_LABEL = "default"


class AccountGoneError(failures.GrantGoneError):
    """The grant of a known account (or of the default account, not yet created) cannot be used."""

    def __init__(self, reason: str, message: str, account: ConnectedAccount | None):
        super().__init__(reason, message)
        self.account = account


@dataclass(frozen=True)
class Caller:
    org: str
    user: str


@dataclass(frozen=True)
class MagicLinkIssued:
    url: str
    expires_at: datetime
    link_id: str = ""  # the row's id: not a secret, names the link in events and URL elicitations


class ProbeOk(Ok):
    detail: str
    provider_account_id: str | None = None


class ProviderSession:
    """The `ApiSession` a provider operation talks through, bound to one account and one tool call's deadline.

    Every request has a total deadline (`api_timeout_seconds`: connect, send and every read), goes through the
    connector's own connection pool, and has its answer read within the connector's size bound before anything
    classifies it. `write_sent` says whether a non-idempotent request may have reached the provider in this call.
    """

    def __init__(self, executor: Executor, account: ConnectedAccount, connector: Connector, deadline: float | None = None):
        self.executor = executor
        self.account = account
        self.connector = connector
        self.deadline = deadline  # on the event loop's clock; None: no tool-call deadline
        self.write_sent = False
        self.answered = False

    async def send(self, call: ApiCall) -> httpx2.Response:
        """The provider's OK answer to `call`, sent again as the executor's retry policy allows (a write only when
        it cannot have been applied); or the failure of the last attempt."""
        policy = self.executor.retry_policy if call.idempotent else self.executor.write_retry_policy
        return await policy.call(
            lambda attempt: self._request(call, attempt), time_left=self.time_left, on_retry=self._note_retry
        )

    def time_left(self) -> float:
        return math.inf if self.deadline is None else self.deadline - asyncio.get_running_loop().time()

    def _note_retry(self, failed_attempts: int, error: BaseException | None) -> None:
        self.executor.log.info(
            "provider_call_retry",
            account=self.account.display_name,
            attempt=failed_attempts,
            reason=getattr(error, "reason", type(error).__name__),
        )

    async def _request(self, call: ApiCall, attempt: int) -> httpx2.Response:
        with tracing.span("provider_request", connector=self.connector.name, attempt=attempt, retry=attempt > 1):
            connector = self.connector
            name = connector.spec.display_name
            settings = self.executor.settings
            pool = self.executor.pools[connector.name]
            limit = min(connector.max_response_bytes, call.max_response_bytes or connector.max_response_bytes)
            headers = {**connector.spec.api_headers, **call.headers}
            request = _build_request(pool, call, connector.api_url(call.path), headers)
            sent = False  # whether the request (of the current attempt) may have reached the provider

            async def note_sending(event: str, info: dict[str, Any]) -> None:
                nonlocal sent
                if event.endswith(".send_request_headers.started"):
                    sent = self.write_sent = True

            if not call.idempotent:  # only a write's outcome depends on it; reads skip httpcore's trace calls
                request.extensions["trace"] = note_sending

            call_ends_first = False  # whether the current attempt's timer is the call's deadline, not the request's

            async def exchange(request: httpx2.Request) -> httpx2.Response:
                nonlocal sent, call_ends_first
                sent = False
                # One timer for both deadlines (asyncio's own: the server runs on asyncio only): the request's, or the
                # call's when that comes first. Waiting for one of the connector's connections counts.
                request_ends = asyncio.get_running_loop().time() + settings.api_timeout_seconds
                call_ends_first = self.deadline is not None and self.deadline <= request_ends
                async with asyncio.timeout_at(self.deadline if call_ends_first else request_ends):
                    async with pool.connection() as client:
                        streamed = await client.send(request, stream=True)
                        try:
                            response = await read_response_bounded(streamed, limit, cut=call.cut_at_bound)
                        finally:
                            await streamed.aclose()
                self.answered = True
                return response

            executor = self.executor
            auth = ProviderAuth(executor.tokens, executor.vault, executor.events, self.account, connector)
            try:
                return await auth.send(request, exchange, idempotent=call.idempotent, deadline=self.deadline)
            except CallDeadlineError:
                raise
            except TimeoutError:
                if call_ends_first:
                    raise CallDeadlineError("the tool call's deadline passed during a request") from None
                message = f"{name} did not answer within {settings.api_timeout_seconds:g} s."
                if sent and not call.idempotent:
                    raise failures.AmbiguousWriteError("timeout", message) from None
                raise failures.UpstreamCallError("timeout", message, retryable=True) from None
            except ResponseTooLarge as too_large:
                too_large_answer = f"{name} sent an answer larger than {too_large.limit} bytes; it was not read."
                raise _unreadable_answer(call, "response_too_large", too_large_answer) from None
            except httpx2.DecodingError:
                undecodable = f"{name} sent an answer that could not be decoded."
                raise _unreadable_answer(call, "malformed_response", undecodable) from None
            except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout):
                raise failures.UpstreamCallError("unreachable", f"{name} could not be reached.", retryable=True) from None
            except httpx2.TransportError as exc:
                if call.idempotent or not sent:
                    raise failures.UpstreamCallError(_transport_reason(exc), f"{name} did not answer.", retryable=True) from None
                raise failures.AmbiguousWriteError(_transport_reason(exc), f"{name} did not answer.") from None


def _build_request(pool: ConnectorPool, call: ApiCall, url: str, headers: dict[str, str]) -> httpx2.Request:
    """The request the pool's client would build — its default headers under ours, its timeouts — but never with a
    cookie (pools.py `cookieless_jar`), or `invalid_input` when the arguments cannot make one (nothing is sent
    either way)."""
    merged = pool.headers.copy()
    for key, value in headers.items():
        # h11 refuses these while sending, which would look like a lost connection; refuse them here instead.
        if not (value.isascii() and value.isprintable()) or value != value.strip():
            raise failures.InvalidInputError("invalid_header_value", f"The {key} header value is not plain text.")
        merged[key.lower()] = value  # replacing a default whatever its spelling, as the client's merge does
    params = call.params
    if params and "?" not in url and "#" not in url:
        # The same URL httpx2 would make, parsed once instead of twice (it re-parses to merge `params`): ~18 µs a call.
        url, params = f"{url}?{httpx2.QueryParams(params)}", None
    try:
        return httpx2.Request(
            call.method, url, params=params, json=call.json, data=call.data, headers=merged, extensions={"timeout": pool.timeout}
        )
    except httpx2.InvalidURL:
        raise failures.InvalidInputError("request_too_large", "The arguments make a request URL too long to send.") from None


def _unreadable_answer(call: ApiCall, reason: str, message: str) -> failures.UpstreamCallError:
    """An answer that could not be read: not worth asking again, and a write's outcome unknown (it may have been
    applied before the answer went wrong)."""
    return failures.UpstreamCallError(reason, message, retryable=False, outcome_unknown=not call.idempotent)


def _account_name(caller: Caller, connector_name: str, label: str) -> str:
    """An account's display name before it is found (as `ConnectedAccount.display_name` writes it)."""
    return f"{caller.org}/{caller.user}/{connector_name}" + ("" if label == DEFAULT_LABEL else f"/{label}")


def _transport_reason(exc: Exception) -> str:
    return "timeout" if isinstance(exc, httpx2.TimeoutException) else "connection_lost"


class Executor:
    def __init__(
        self,
        settings: Settings,
        vault: Vault,
        connectors: dict[str, Connector],
        tokens: TokenManager,
        events: EventRecorder,
        pools: ConnectorPools,
    ):
        self.settings = settings
        self.vault = vault
        self.connectors = connectors
        self.tokens = tokens
        self.events = events
        self.pools = pools
        self.log = get_logger("grantkeeper.execute")
        self.retry_policy = RetryPolicy(
            attempts=settings.retry_attempts,
            initial_backoff=settings.retry_initial_wait_seconds,
            max_backoff=settings.retry_max_wait_seconds,
            max_retry_after=settings.rate_limit_max_wait_seconds,
        )
        self.write_retry_policy = dataclasses.replace(self.retry_policy, idempotent=False)
        self._accounts: RevalidatingCache[tuple[str, str, str, str], ConnectedAccount] = RevalidatingCache(
            ACCOUNT_CACHE_SECONDS,
            self._find_account,
            # Only working accounts are kept: any other status is read again on the next call.
            cacheable=lambda account: account.status == AccountStatus.ACTIVE,
        )

    # ---- the call -----------------------------------------------------------------------------------
    async def run(
        self,
        caller: Caller,
        connector_name: str,
        operation: Callable[[ProviderSession], Awaitable[T]],
        *,
        label: str | None = None,
    ) -> T | FailureResult:
        """Run `operation` against the caller's account labelled `label` (None: the default account) and return
        its Ok model or a failure result."""
        connector = self.connectors[connector_name]
        label = label or DEFAULT_LABEL
        if connector.missing_base_url:
            return self._not_configured(connector, _account_name(caller, connector_name, label))
        try:
            with tracing.span("resolve_account", connector=connector_name) as span:
                account = await self.resolve(caller, connector, label)
                tracing.annotate(span, account_id=account.id)
                tracing.annotate_call(account_id=account.id)
        except AccountGoneError as gone:
            return await self.reauth_required_with_new_link(caller, connector, gone.account, gone.reason)
        except failures.ToolCallError as failure:
            return failure_result(failure, connector=connector_name, account=_account_name(caller, connector_name, label))
        return await self.run_on_account(account, connector, operation)

    async def run_on_account(
        self, account: ConnectedAccount, connector: Connector, operation: Callable[[ProviderSession], Awaitable[T]]
    ) -> T | FailureResult:
        if connector.missing_base_url:
            return self._not_configured(connector, account.display_name)
        deadline = self.settings.tool_call_deadline_seconds
        # No timer of the call's own: each of its waits is bounded by this deadline where it happens (deadlines.py).
        session = ProviderSession(self, account, connector, deadline=asyncio.get_running_loop().time() + deadline)
        name = connector.spec.display_name
        try:
            result = await operation(session)
            if account.status != AccountStatus.ACTIVE:
                self.forget_account(account)
                await change_status(self.vault, self.events, account, AccountStatus.ACTIVE, None)
            return result
        except failures.GrantGoneError as gone:
            # The vault already says so (tokens.py or auth.py wrote it, conditional on the credential version).
            self.forget_account(account)
            return await self.reauth_required_with_new_link(Caller(account.org, account.user), connector, account, gone.reason)
        except failures.AdminActionRequiredError as failure:
            self.forget_account(account)  # the status may have changed with it
            return failure_result(failure, connector=connector.name, account=account.display_name)
        except failures.ToolCallError as failure:
            return failure_result(failure, connector=connector.name, account=account.display_name)
        except UnsafeArgument as refused:
            return failure_result(
                failures.InvalidInputError(refused.reason, str(refused)), connector=connector.name, account=account.display_name
            )
        except TimeoutError:  # CallDeadlineError, or a timeout nothing below turned into a failure
            # The whole call, retries and waits included, ran out of time: the agent may try again later.
            return failure_result(
                failures.UpstreamCallError(
                    "timeout",
                    f"{name} did not answer within this tool call's deadline ({deadline:g} s).",
                    retryable=True,
                    outcome_unknown=session.write_sent,
                ),
                connector=connector.name,
                account=account.display_name,
            )
        except VaultIntegrityError:
            self.forget_account(account)
            await self.events.record(EventKind.VAULT_INTEGRITY_FAILED, account, severity=Severity.CRITICAL)
            return failure_result(
                failures.AdminActionRequiredError(
                    "vault_integrity_failed", "The stored credential failed its integrity check and was not used."
                ),
                connector=connector.name,
                account=account.display_name,
            )
        except ValidationError:
            self.log.warning("malformed_provider_response", account=account.display_name, exc_info=True)
            return failure_result(
                failures.UpstreamCallError(
                    "malformed_response",
                    f"{name} answered in an unexpected shape.",
                    retryable=False,
                    outcome_unknown=session.write_sent,
                ),
                connector=connector.name,
                account=account.display_name,
            )
        except Exception as exc:
            # Never a stack trace to the agent; the operator's log has it (redacted). An answer the operation could
            # not read (not JSON, missing fields) is the provider's odd answer, and only a write that may have
            # reached the provider leaves the outcome unknown.
            if session.answered and isinstance(exc, ValueError | KeyError | TypeError | AttributeError | IndexError):
                self.log.warning("malformed_provider_response", account=account.display_name, exc_info=True)
                unreadable = failures.UpstreamCallError(
                    "malformed_response",
                    f"{name} answered in an unexpected shape.",
                    retryable=False,
                    outcome_unknown=session.write_sent,
                )
            else:
                self.log.error("tool_call_failed", account=account.display_name, exc_info=True)
                unreadable = failures.UpstreamCallError(
                    "internal_error",
                    "grantkeeper hit an internal error; the operator's log has the details.",
                    retryable=False,
                    outcome_unknown=session.write_sent,
                )
            return failure_result(unreadable, connector=connector.name, account=account.display_name)

    @staticmethod
    def _not_configured(connector: Connector, account: str) -> FailureResult:
        # Before any account lookup or magic link: no user can fix this, only the operator.
        failure = failures.AdminActionRequiredError("connector_not_configured", connector.missing_base_url or "")
        return failure_result(failure, connector=connector.name, account=account)

    async def probe(self, account: ConnectedAccount) -> ProbeOk | FailureResult:
        """The provider's cheapest authenticated call, through the same refresh and classification path."""
        connector = self.connectors[account.connector]
        health = connector.spec.health_probe
        if health is None:
            return ProbeOk(detail="no health probe for this provider")

        async def operation(api: ProviderSession) -> ProbeOk:
            response = await api.send(ApiCall(health.method, health.path, json=health.body))
            account_id, _identity = connector.provider.identity_from_probe(json_body(response))
            return ProbeOk(detail="ok", provider_account_id=account_id)

        return await self.run_on_account(account, connector, operation)

    async def resolve(self, caller: Caller, connector: Connector, label: str = "default") -> ConnectedAccount:
        key = (caller.org, caller.user, connector.name, label)
        account = self._accounts.cached(key) or await self._accounts.get(key)
        if account is None and label != DEFAULT_LABEL:
            # Only the default account is created on first use; another label must be connected by name first.
            labels = await in_vault_thread(self._labels, caller, connector.name)
            existing = ", ".join(labels) if labels else "none yet"
            raise failures.InvalidInputError(
                "unknown_account_label",
                f"There is no {connector.spec.display_name} account labelled {label!r}; the caller's labels are: "
                f"{existing}. Omit `account` for the default one, or connect this one with accounts_connect.",
            )
        if account is None or account.status == AccountStatus.PENDING:
            raise AccountGoneError("not_connected", "No account is connected yet.", account)
        if account.status == AccountStatus.REAUTH_REQUIRED:
            raise AccountGoneError(account.status_reason or "reauth_required", "The account must be reconnected.", account)
        if account.status == AccountStatus.DISABLED:
            raise failures.AdminActionRequiredError("account_disabled", "The account was disabled by an operator.")
        return account

    def _labels(self, caller: Caller, connector_name: str) -> list[str]:
        return [
            account.label for account in self.vault.accounts.all(caller.org, caller.user) if account.connector == connector_name
        ]

    async def _find_account(self, key: tuple[str, str, str, str]) -> ConnectedAccount | None:
        return await in_vault_thread(self.vault.accounts.find, *key)

    def forget_account(self, account: ConnectedAccount) -> None:
        self._accounts.forget((account.org, account.user, account.connector, account.label))
        self.tokens.forget(account.id)

    # ---- re-authorization ---------------------------------------------------------------------------
    async def reauth_required_with_new_link(
        self, caller: Caller, connector: Connector, account: ConnectedAccount | None, reason: str
    ) -> FailureResult:
        """`reauth_required` with a new magic link for the account's owner, creating the account (pending) first
        when the caller has none yet — unless the owner reconnected it while this call was failing: then a link
        would only ask them to consent once more, and the agent should call again. Without an OAuth client no link
        could complete, so the operator's action is asked for instead."""
        if missing := connector.missing_client:
            shown = account.display_name if account else f"{caller.org}/{caller.user}/{connector.name}"
            return failure_result(
                failures.AdminActionRequiredError("client_not_configured", missing), connector=connector.name, account=shown
            )
        if account is None:
            account = await in_vault_thread(self._pending_account, caller, connector.name)
        if reason == "not_connected":
            link: MagicLinkIssued | None = await self.issue_link(account, "connect", reason)
        else:
            # Issued only while the account is not working: a reconnect completing at the same moment either
            # retires this link with the others or comes first, and then there is no link to give.
            link = await self._issue_reauth_link_unless_active(account, reason)
        if link is None:
            return failure_result(
                failures.UpstreamCallError(
                    "reconnected_meanwhile", "The account was reconnected a moment ago; call the tool again.", retryable=True
                ),
                connector=connector.name,
                account=account.display_name,
            )
        who = f"{account.user} (org {account.org})"
        result = ReauthRequired(
            connector=connector.name,
            account=account.display_name,
            reason=reason,
            magic_link=link.url,
            link_expires_at=link.expires_at,
            next_step=(
                f"Ask {who} to open the link and approve access at {connector.spec.display_name}, "
                "then call this tool again. Do not retry before that; it will fail the same way."
            ),
        )
        result._link_id = link.link_id
        return result

    async def connect_link(
        self, caller: Caller, connector_name: str, label: str = "default", *, issued_by: str = "agent"
    ) -> tuple[ConnectedAccount, MagicLinkIssued]:
        """A link with which the caller connects (or reconnects) their own account for `connector_name`, the one
        labelled `label` (created, pending, when it does not exist yet)."""
        account = await in_vault_thread(self._pending_account, caller, connector_name, label)
        purpose = "connect" if account.status == AccountStatus.PENDING else "reauth"
        return account, await self.issue_link(account, purpose, "requested", issued_by=issued_by)

    def _pending_account(self, caller: Caller, connector_name: str, label: str = DEFAULT_LABEL) -> ConnectedAccount:
        account = self.vault.accounts.find(caller.org, caller.user, connector_name, label)
        if account is not None:
            return account
        try:
            return self.vault.accounts.create(
                org=caller.org, user=caller.user, connector=connector_name, label=label, status=AccountStatus.PENDING
            )
        except AccountExistsError:  # created by a concurrent call
            created = self.vault.accounts.find(caller.org, caller.user, connector_name, label)
            if created is None:  # created and removed again meanwhile: refuse rather than guess
                raise
            return created

    async def issue_link(
        self, account: ConnectedAccount, purpose: str, reason: str | None, *, issued_by: str = "agent"
    ) -> MagicLinkIssued:
        token, ttl = new_secret_token(), self._link_ttl()
        record = await in_vault_thread(
            self.vault.links.create, token=token, account=account, purpose=purpose, reason=reason, ttl=ttl, issued_by=issued_by
        )
        return self._issued(token, record)

    async def issue_link_unless_open(
        self, account: ConnectedAccount, purpose: str, reason: str, *, issued_by: str
    ) -> MagicLinkIssued | None:
        """A new link, unless the account has an open one for `reason` already (None then): one live link per
        cause, however many callers ask at once."""
        token, ttl = new_secret_token(), self._link_ttl()
        record = await in_vault_thread(
            self.vault.links.create_unless_open,
            token=token,
            account=account,
            purpose=purpose,
            reason=reason,
            ttl=ttl,
            issued_by=issued_by,
        )
        return None if record is None else self._issued(token, record)

    async def _issue_reauth_link_unless_active(self, account: ConnectedAccount, reason: str) -> MagicLinkIssued | None:
        token, ttl = new_secret_token(), self._link_ttl()
        record = await in_vault_thread(
            self.vault.links.create_unless_active, token=token, account=account, purpose="reauth", reason=reason, ttl=ttl
        )
        return None if record is None else self._issued(token, record)

    def _link_ttl(self) -> timedelta:
        return timedelta(seconds=self.settings.magic_link_ttl_seconds)

    def _issued(self, token: str, record: MagicLink) -> MagicLinkIssued:
        return MagicLinkIssued(f"{self.settings.public_url}/connect/{token}", record.expires_at, record.id)

"""What a person sees when a magic link or a provider sign-in is refused: one wording (status, title, what happened,
what to do next) per `Refusal`, and the page that says it. Every refusal page also says that nothing was changed.

    except ReauthRefused as refused:
        return refusal_page(refused)
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.responses import HTMLResponse

from server.reauth import ReauthRefused, Refusal
from server.web.rendering import render


@dataclass(frozen=True)
class Wording:
    status: int
    title: str
    message: str
    next_step: str


UNCHANGED = "Nothing was changed."
NEW_LINK = "ask your agent to call the tool again; it will give you a new link."
ASK_AGAIN = NEW_LINK[0].upper() + NEW_LINK[1:]
REFUSALS: dict[Refusal, Wording] = {
    Refusal.LINK_UNKNOWN: Wording(
        404,
        "This link is not valid",
        "The link is incomplete, was altered, or belongs to another grantkeeper server.",
        "Check that you opened the whole link. " + ASK_AGAIN,
    ),
    Refusal.LINK_EXPIRED: Wording(
        410, "This link has expired", "Links are valid for a limited time so that a leaked link is soon useless.", ASK_AGAIN
    ),
    Refusal.LINK_USED: Wording(
        410,
        "This link was already used",
        "Each link works once. It was opened before, or the account was reconnected with another link.",
        "If the agent still reports a problem, " + NEW_LINK,
    ),
    Refusal.ACCOUNT_DISABLED: Wording(
        403,
        "This account is disabled",
        "An administrator disabled the {provider} connection {account}.",
        "Ask your grantkeeper administrator to enable it.",
    ),
    Refusal.CLIENT_NOT_CONFIGURED: Wording(
        503,
        "{provider} is not set up on this server",
        "The server has no {provider} OAuth client id and secret configured.",
        "Tell your grantkeeper administrator; the link stays valid until it expires.",
    ),
    Refusal.STATE_MISSING: Wording(
        400, "This sign-in cannot be completed", "The request came back from the provider without its state parameter.", ASK_AGAIN
    ),
    Refusal.STATE_UNKNOWN: Wording(
        400,
        "This sign-in cannot be completed",
        "The request does not belong to any sign-in started here. It may have been altered or forged.",
        ASK_AGAIN,
    ),
    Refusal.FLOW_FINISHED: Wording(
        409,
        "This sign-in is already finished",
        "The {provider} sign-in for {account} was completed before; a sign-in counts once.",
        "If the agent still reports a problem, " + NEW_LINK,
    ),
    Refusal.FLOW_EXPIRED: Wording(
        410, "This sign-in took too long", "The {provider} sign-in for {account} was started too long ago.", ASK_AGAIN
    ),
    Refusal.OTHER_BROWSER: Wording(
        403,
        "Finish in the browser that opened the link",
        "This {provider} sign-in was started in another browser (or its cookie was cleared), so it cannot be completed here.",
        "Finish in the browser where you opened the link, or " + NEW_LINK,
    ),
    Refusal.ACCESS_DENIED: Wording(
        403,
        "Access was not granted",
        "{provider} says access was declined, so {account} was not connected.",
        "If you declined by mistake, go back and choose Allow, or " + NEW_LINK,
    ),
    Refusal.PROVIDER_ERROR: Wording(
        502, "{provider} did not complete the sign-in", "{provider} returned the error “{error}”.", ASK_AGAIN
    ),
    Refusal.CODE_MISSING: Wording(
        400, "This sign-in cannot be completed", "{provider} sent the browser back without an authorization code.", ASK_AGAIN
    ),
    Refusal.EXCHANGE_FAILED: Wording(
        502, "{provider} did not accept the sign-in", "Exchanging the authorization code failed ({error}).", ASK_AGAIN
    ),
    Refusal.IDENTITY_UNKNOWN: Wording(
        502,
        "Could not confirm the {provider} account",
        "{provider} did not say which account approved access, so it was not connected.",
        ASK_AGAIN,
    ),
    Refusal.ISSUER_MISMATCH: Wording(
        400,
        "This sign-in cannot be completed",
        "The answer did not come from {provider}'s sign-in server (its issuer did not match), so it was not used.",
        ASK_AGAIN,
    ),
    Refusal.ID_TOKEN_INVALID: Wording(
        502,
        "Could not confirm the {provider} account",
        "{provider}'s identity token failed its checks ({error}), so the account was not connected.",
        ASK_AGAIN,
    ),
    Refusal.IDENTITY_MISMATCH: Wording(
        403,
        "That is a different {provider} account",
        "You approved access as {presented}, but {account} is connected to "
        "{expected}. A link only reconnects its own account, so the other account "
        "was not attached.",
        "Go back, sign in to {provider} as {expected} and approve again. A link "
        "cannot swap in a different {provider} account; for that, ask your "
        "grantkeeper administrator.",
    ),
    Refusal.CROSS_SITE: Wording(
        403,
        "This request came from another site",
        "The Continue button was pressed on a page that is not this grantkeeper server's. "
        "Another site cannot connect or reconnect accounts through your browser.",
        "If you meant to connect an account, open the link you were given yourself and press Continue there.",
    ),
    Refusal.FORM_TOKEN_INVALID: Wording(
        403,
        "This form cannot be used",
        "The form did not carry the token this server gave the page in your "
        "browser: the page was opened in another browser, its cookies were "
        "cleared, or the form was not this server's.",
        "Open the link again in this browser and press Continue.",
    ),
}


def refusal_page(refused: ReauthRefused) -> HTMLResponse:
    wording = REFUSALS[refused.refusal]
    context = refused.context
    account, connector = context.get("account"), context.get("connector")
    if connector is not None:
        provider = connector.spec.display_name
    else:
        provider = account.connector.capitalize() if account else "the provider"
    values = {
        "provider": provider,
        "account": account.display_name if account else "the account",
        "presented": context.get("presented", ""),
        "expected": context.get("expected", ""),
        "error": context.get("error", ""),
    }
    # The footer names the provider only when it is known ("keeps your account grant", not "your the provider grant").
    return render(
        "message.html",
        wording.status,
        outcome=refused.refusal.value,
        provider_name=provider if account or connector else None,
        title=wording.title.format(**values),
        paragraphs=[wording.message.format(**values), UNCHANGED],
        next_step=wording.next_step.format(**values),
    )

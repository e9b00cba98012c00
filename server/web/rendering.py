"""Pages from the Jinja templates in `server/templates/`, escaped, with the headers every page carries (no caching,
no framing: `security.PAGE_HEADERS`). The link pages, sign-in, consent and the console all render through it.

    return render("message.html", 403, outcome="wrong_person", title="...", paragraphs=[...], next_step="...")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from starlette.responses import HTMLResponse

from server.web.security import PAGE_HEADERS

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent.parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def render(template: str, status: int = 200, **values: Any) -> HTMLResponse:
    """`template` filled with `values`; the footer names no provider unless `provider_name` is given."""
    values.setdefault("provider_name", None)
    return HTMLResponse(_templates.get_template(template).render(**values), status, headers=PAGE_HEADERS)

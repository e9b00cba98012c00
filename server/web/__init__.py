"""The web side: one Starlette app with the magic-link pages, the OAuth callback, `/healthz`, the console and, on
HTTP, the MCP transports (`app.py`, where every route is listed), and the uvicorn listener that serves it inside
our event loop (`listener.py`). `grantkeeper serve` puts them together
(server/http_server.py over HTTP and SSE, server/stdio_server.py beside stdio).

- `app.py`: the app, its routes as one list, the MCP transports behind API-key authentication;
- `link_pages.py`: `/connect/{token}` and the OAuth callback; `refusals.py`: what a refused link or sign-in says;
- `health.py`, `metrics.py`: `/healthz` and `/metrics`;
- `rendering.py`: pages from `server/templates/`; `security.py`: the pages' CSRF and framing defences;
- `listener.py`, `listener_limits.py`: the embedded uvicorn listener and its limits against slow clients.
"""

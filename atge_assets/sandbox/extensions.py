"""Extra sandbox routes, one module per domain, so each grows without touching server.py.

Each module has `handle(handler, method, path, query) -> bool`: True when it answered the request
(through `handler._send(status, body)`), False to let the next one or the core routes try.
The handler gives access to `handler.server.state` (the SandboxState) and `handler._body()`.
"""

from atge_assets.sandbox import experiments, metrics, poison


def default_extensions() -> list:
    return [metrics.handle, experiments.handle, poison.handle]

"""Electronic data capture web application: REST API (/api, OpenAPI at /openapi.json) and the
server-rendered browser UI, both on top of the capture services. Build it with :func:`create_app`."""

from regenheart.web.app import create_app

__all__ = ["create_app"]

"""A database that does not answer (down, restarting, locked beyond its timeout) gives 503 with Retry-After
and the error body /openapi.json declares, never a 500 or a stack trace; pages get a plain 503 page."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from .test_pages import login


def _down(*_args, **_kwargs):
    raise OperationalError("SELECT 1", {}, Exception("could not connect to server: Connection refused"))


def test_api_answers_503_with_retry_after(client, auth, app, monkeypatch):
    headers = auth("coordinator")
    monkeypatch.setattr(app.state.ctx.capture, "get_form", _down)
    response = client.get("/api/subjects/01-001/forms/SCR/echo", headers=headers)
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    body = response.json()
    assert body["error"] == "database_unavailable" and "reload" in body["detail"]
    assert "Connection refused" not in response.text and "Traceback" not in response.text
    spec = client.get("/openapi.json").json()
    declared = spec["paths"]["/api/subjects/{subject_id}/forms/{visit}/{form}"]["get"]["responses"]["503"]
    assert declared["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}


def test_page_answers_a_plain_503(client, app, monkeypatch):
    login(client, "coord1")
    monkeypatch.setattr(app.state.ctx.capture, "get_form", _down)
    response = client.get("/subjects/01-001/forms/SCR/echo")
    assert response.status_code == 503 and "Database unavailable" in response.text
    assert "Connection refused" not in response.text

"""The health endpoint: no authentication, database reachable, migrations at head, 503 otherwise."""

from __future__ import annotations

from sqlalchemy import text

from regenheart.store.db import head_revision


def test_health_ok_without_authentication(client):
    response = client.get("/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"] == "reachable" and body["migrations_at_head"] is True
    assert body["schema_revision"] == body["head_revision"] == head_revision()


def test_health_503_when_migrations_are_behind(client, app):
    engine = app.state.ctx.engine
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    response = client.get("/api/health")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable" and response.json()["schema_revision"] == "0001"


def test_health_declared_in_openapi(client):
    operation = client.get("/openapi.json").json()["paths"]["/api/health"]["get"]
    assert {"200", "503"} <= set(operation["responses"])

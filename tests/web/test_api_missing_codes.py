"""Missing-data codes over the API: {"missing": CODE, "reason": TEXT} in place of a value, declared in
/openapi.json, returned as sent, refused with the violation list when malformed."""

from __future__ import annotations

URL = "/api/subjects/01-001/forms/SCR/labs"


def test_a_coded_value_is_saved_and_read_back(client, auth):
    body = {"data": {"ntprobnp_pg_ml": {"missing": "ND", "reason": "sample haemolysed"}, "creatinine_mg_dl": 1.1},
            "version": 0}
    response = client.put(URL, json=body, headers=auth("coordinator"))
    assert response.status_code == 200, response.text
    saved = response.json()
    assert saved["status"] == "complete"
    assert saved["data"]["ntprobnp_pg_ml"] == {"missing": "ND", "reason": "sample haemolysed"}
    assert client.get(URL, headers=auth("monitor")).json()["data"]["ntprobnp_pg_ml"]["missing"] == "ND"


def test_a_code_without_its_reason_is_a_422_naming_the_field(client, auth):
    body = {"data": {"ntprobnp_pg_ml": {"missing": "ND"}, "creatinine_mg_dl": 1.1}, "version": 0}
    response = client.put(URL, json=body, headers=auth("coordinator"))
    assert response.status_code == 422
    found = {v["field"]: v["rule"] for v in response.json()["violations"]}
    assert found == {"ntprobnp_pg_ml": "reason_required"}


def test_a_malformed_code_object_is_a_422_not_a_500(client, auth):
    for value in ({"missing": 5}, {"missing": "ND", "extra": 1}, [1, 2]):
        response = client.put(URL, json={"data": {"ntprobnp_pg_ml": value}}, headers=auth("coordinator"))
        assert response.status_code == 422, (value, response.text)
        assert response.json()["violations"]


def test_openapi_declares_the_missing_value(client):
    schema = client.get("/openapi.json").json()
    missing = schema["components"]["schemas"]["MissingValue"]
    assert set(missing["properties"]) == {"missing", "reason"} and missing["required"] == ["missing"]
    data = schema["components"]["schemas"]["FormSaveRequest"]["properties"]["data"]
    assert {"$ref": "#/components/schemas/MissingValue"} in data["additionalProperties"]["anyOf"]

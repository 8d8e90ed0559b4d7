"""Strategies over HTTP: templates, creation with validated parameters, lifecycle, ownership."""

from __future__ import annotations

import json
import uuid

from tests.conftest import data, error

PASSWORD = "Strategy1Password"


async def user_headers(stack) -> tuple[dict, dict[str, str]]:
    _, user, headers = await stack.new_account(PASSWORD)
    return user, headers


async def test_templates_and_creation(stack):
    user, headers = await user_headers(stack)
    templates = data(await stack.http.get("/strategies/templates", headers=headers))
    assert [t["id"] for t in templates] == [
        "moving_average",
        "bollinger_bands",
        "rsi",
        "macd",
        "mean_reversion",
        "momentum",
    ]
    created = data(
        await stack.http.post(
            "/strategies",
            json={"name": "Golden cross", "template": "moving_average", "parameters": {"longWindow": 50}},
            headers=headers,
        ),
        201,
    )
    assert created["id"].startswith(f"{user['id']}-") and created["status"] == "draft"
    assert created["parameters"] == {"shortWindow": 5, "longWindow": 50} and created["userId"] == user["id"]
    other = data(
        await stack.http.post("/strategies/from-template", json={"name": "RSI", "templateId": "rsi"}, headers=headers),
        201,
    )
    assert other["template"] == "rsi" and other["parameters"]["overbought"] == 70.0
    listed = data(await stack.http.get("/strategies", headers=headers))
    assert listed["total"] == 2 and [s["name"] for s in listed["items"]] == ["RSI", "Golden cross"]
    found = data(await stack.http.get("/strategies", params={"search": "gold"}, headers=headers))
    assert [s["id"] for s in found["items"]] == [created["id"]]


async def test_invalid_parameters_are_refused_with_the_problems(stack):
    _, headers = await user_headers(stack)
    bad = {"name": "x", "template": "moving_average", "parameters": {"shortWindow": 30, "longWindow": 20, "foo": 1}}
    refused = error(await stack.http.post("/strategies", json=bad, headers=headers), 422)
    assert refused["code"] == "STRATEGY_INVALID_PARAMETERS"
    assert refused["details"] == ["unknown parameter 'foo'", "shortWindow must be less than longWindow"]
    unknown = error(await stack.http.post("/strategies", json={"name": "x", "template": "nope"}, headers=headers), 422)
    assert unknown["details"] == ["unknown template 'nope'"]
    assert data(await stack.http.get("/strategies", headers=headers))["total"] == 0


async def test_update_validate_and_lifecycle(stack):
    _, headers = await user_headers(stack)
    strategy = data(await stack.http.post("/strategies", json={"name": "M", "template": "macd"}, headers=headers), 201)
    sid = strategy["id"]
    updated = data(
        await stack.http.put(
            f"/strategies/{sid}", json={"name": "MACD fast", "parameters": {"fast": 6}}, headers=headers
        )
    )
    assert updated["name"] == "MACD fast" and updated["parameters"] == {"fast": 6, "slow": 26, "signal": 9}
    assert error(await stack.http.put(f"/strategies/{sid}", json={"parameters": {"fast": 40}}, headers=headers), 422)[
        "code"
    ] == ("STRATEGY_INVALID_PARAMETERS")
    check = data(
        await stack.http.post(
            f"/strategies/{sid}/validate-execution", json={"parameters": {"signal": 0}}, headers=headers
        )
    )
    assert check["valid"] is False and check["errors"] == ["signal must be between 1 and 100"]
    assert (
        data(await stack.http.post(f"/strategies/{sid}/validate-execution", json={}, headers=headers))["valid"] is True
    )

    assert data(await stack.http.post(f"/strategies/{sid}/activate", headers=headers))["status"] == "active"
    assert data(await stack.http.post(f"/strategies/{sid}/deactivate", headers=headers))["status"] == "inactive"
    assert data(await stack.http.post(f"/strategies/{sid}/archive", headers=headers))["status"] == "archived"
    again = error(await stack.http.post(f"/strategies/{sid}/activate", headers=headers), 409)
    assert again["code"] == "STRATEGY_INVALID_TRANSITION"
    frozen = error(await stack.http.put(f"/strategies/{sid}", json={"name": "late"}, headers=headers), 409)
    assert frozen["code"] == "STRATEGY_ARCHIVED"
    assert data(await stack.http.get("/strategies", params={"status": "archived"}, headers=headers))["total"] == 1
    data(await stack.http.delete(f"/strategies/{sid}", headers=headers))
    assert error(await stack.http.get(f"/strategies/{sid}", headers=headers), 403)["code"] == "STRATEGY_ACCESS_DENIED"


async def test_another_users_strategy_is_access_denied_on_every_route(stack):
    _, owner = await user_headers(stack)
    _, stranger = await user_headers(stack)
    sid = data(await stack.http.post("/strategies", json={"name": "mine", "template": "rsi"}, headers=owner), 201)["id"]
    for method, path, body in [
        ("GET", f"/strategies/{sid}", None),
        ("PUT", f"/strategies/{sid}", {"name": "theirs"}),
        ("POST", f"/strategies/{sid}/validate-execution", {}),
        ("POST", f"/strategies/{sid}/activate", None),
        ("POST", f"/strategies/{sid}/deactivate", None),
        ("POST", f"/strategies/{sid}/archive", None),
        ("DELETE", f"/strategies/{sid}", None),
        ("GET", f"/strategies/{uuid.uuid4()}", None),
    ]:
        response = await stack.http.request(method, path, json=body, headers=stranger)
        assert response.status_code == 403 and response.json()["error"]["code"] == "STRATEGY_ACCESS_DENIED", path
    assert data(await stack.http.get("/strategies", headers=stranger))["total"] == 0
    assert data(await stack.http.get(f"/strategies/{sid}", headers=owner))["name"] == "mine"


async def test_cli_strategies(stack):
    address = f"strat-{uuid.uuid4().hex[:8]}@example.com"
    await stack.register_verified(address, PASSWORD)
    created = await stack.cli(
        "strategies",
        "create",
        "--user",
        address,
        "--name",
        "CLI MA",
        "--template",
        "moving_average",
        "--parameters",
        '{"shortWindow": 10}',
    )
    assert created.exit_code == 0, created.output
    strategy = json.loads(created.stdout)
    assert strategy["parameters"] == {"shortWindow": 10, "longWindow": 20} and strategy["user_id"]
    active = json.loads((await stack.cli("strategies", "activate", strategy["id"], "--user", address)).stdout)
    assert active["status"] == "active"
    listed = json.loads((await stack.cli("strategies", "list", "--user", address, "--status", "active")).stdout)
    assert listed["total"] == 1
    bad = await stack.cli(
        "strategies", "create", "--user", address, "--name", "x", "--template", "rsi", "--parameters", '{"period": 1}'
    )
    assert bad.exit_code == 1 and "STRATEGY_INVALID_PARAMETERS" in bad.stderr
    templates = json.loads((await stack.cli("strategies", "templates")).stdout)
    assert len(templates) == 6
    sid = strategy["id"]
    updated = await stack.cli("strategies", "update", sid, "--user", address, "--parameters", '{"longWindow": 30}')
    assert json.loads(updated.stdout)["parameters"] == {"shortWindow": 5, "longWindow": 30}
    check = await stack.cli("strategies", "validate-execution", sid, "--user", address, "--parameters", '{"x": 1}')
    assert json.loads(check.stdout)["valid"] is False

"""/users/me/preferences: defaults, deep-merge patches, reset, export/import with migration, and the
level-2 `advanced` section (reference §2.2, §3.5)."""

from __future__ import annotations

import uuid

from tests.conftest import secret

PASSWORD = secret("Prefs-pass-1")
ADMIN_PASSWORD = secret("Admin-prefs-pass-2")
ROUTE = "/users/me/preferences"

DEFAULTS = {
    "version": 1,
    "theme": {"primaryColor": "#1677ff", "mode": "system", "darkMode": False},
    "account": {
        "defaultTradingAccountId": None,
        "riskTolerance": "moderate",
        "defaultCurrency": "USD",
        "autoSelectAccount": True,
    },
    "notifications": {
        "email": {
            "enabled": True,
            "tradingAlerts": True,
            "riskAlerts": True,
            "systemUpdates": True,
            "marketSummary": False,
        },
        "browser": {"enabled": True, "permission": "default", "tradingSignals": True, "riskWarnings": True},
        "alertThresholds": {"profitThreshold": 10, "lossThreshold": 5, "riskLevel": "medium"},
    },
    "data": {
        "defaultTimeRange": "1M",
        "refreshInterval": "5s",
        "chartPreferences": {"defaultChartType": "line", "showVolume": True, "showIndicators": True, "autoScale": True},
        "tablePreferences": {"pageSize": 20, "compactRows": False, "showDecimals": 2},
    },
    "lastUpdated": None,
    "syncEnabled": True,
}


def new_email() -> str:
    return f"prefs-{uuid.uuid4().hex[:12]}@example.com"


async def signed_in(stack) -> tuple[dict, dict[str, str]]:
    _, user, headers = await stack.new_account(PASSWORD)
    return user, headers


async def promoted_to_level_2(stack, user_id: str) -> None:
    admin = new_email()
    result = await stack.cli(
        "users", "create", "--email", admin, "--admin", input=f"{ADMIN_PASSWORD}\n{ADMIN_PASSWORD}\n"
    )
    assert result.exit_code == 0, result.output
    headers = await stack.login(admin, ADMIN_PASSWORD)
    response = await stack.http.patch(f"/admin/users/{user_id}", headers=headers, json={"level": 2})
    assert response.status_code == 200 and response.json()["data"]["level"] == 2


def data(response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is True and body["message"] == "ok"
    return body["data"]


def without_timestamp(document: dict) -> dict:
    return {k: v for k, v in document.items() if k != "lastUpdated"}


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == code
    return body["error"]


async def test_defaults_for_a_new_user(stack):
    _, headers = await signed_in(stack)
    assert data(await stack.http.get(ROUTE, headers=headers)) == DEFAULTS


async def test_routes_need_a_session(stack):
    stack.http.cookies.clear()
    assert_error(await stack.http.get(ROUTE), 401, "MISSING_TOKEN")
    assert_error(await stack.http.patch(ROUTE, json={"syncEnabled": False}), 401, "MISSING_TOKEN")


async def test_patch_deep_merges_and_keeps_siblings(stack):
    _, headers = await signed_in(stack)
    first = data(await stack.http.patch(ROUTE, headers=headers, json={"theme": {"mode": "dark"}}))
    assert first["theme"] == {"primaryColor": "#1677ff", "mode": "dark", "darkMode": True}
    assert isinstance(first["lastUpdated"], str)

    second = data(
        await stack.http.patch(
            ROUTE,
            headers=headers,
            json={"notifications": {"email": {"marketSummary": True}}, "data": {"tablePreferences": {"pageSize": 50}}},
        )
    )
    expected = {
        **DEFAULTS,
        "theme": {"primaryColor": "#1677ff", "mode": "dark", "darkMode": True},
        "notifications": {
            **DEFAULTS["notifications"],
            "email": {**DEFAULTS["notifications"]["email"], "marketSummary": True},
        },
        "data": {**DEFAULTS["data"], "tablePreferences": {"pageSize": 50, "compactRows": False, "showDecimals": 2}},
    }
    assert without_timestamp(second) == without_timestamp(expected)
    assert data(await stack.http.get(ROUTE, headers=headers)) == second


async def test_legacy_dark_mode_flag_in_a_patch_sets_the_mode(stack):
    _, headers = await signed_in(stack)
    patched = data(await stack.http.patch(ROUTE, headers=headers, json={"theme": {"darkMode": True}}))
    assert patched["theme"] == {"primaryColor": "#1677ff", "mode": "dark", "darkMode": True}


async def test_invalid_values_are_rejected_and_nothing_is_stored(stack):
    _, headers = await signed_in(stack)
    error = assert_error(
        await stack.http.patch(ROUTE, headers=headers, json={"theme": {"mode": "purple"}}), 422, "VALIDATION_ERROR"
    )
    assert [d["field"] for d in error["details"]] == ["theme.mode"]
    assert_error(
        await stack.http.patch(ROUTE, headers=headers, json={"data": {"tablePreferences": {"pageSize": 0}}}),
        422,
        "VALIDATION_ERROR",
    )
    assert_error(await stack.http.patch(ROUTE, headers=headers, json={"colour": "red"}), 422, "VALIDATION_ERROR")
    assert_error(await stack.http.patch(ROUTE, headers=headers, json={"version": 7}), 422, "VALIDATION_ERROR")
    assert data(await stack.http.get(ROUTE, headers=headers)) == DEFAULTS


async def test_reset_restores_the_defaults(stack):
    _, headers = await signed_in(stack)
    data(
        await stack.http.patch(
            ROUTE, headers=headers, json={"syncEnabled": False, "account": {"riskTolerance": "aggressive"}}
        )
    )
    reset = data(await stack.http.post(f"{ROUTE}/reset", headers=headers))
    assert without_timestamp(reset) == without_timestamp(DEFAULTS)
    assert data(await stack.http.get(ROUTE, headers=headers)) == reset


async def test_export_then_import_round_trip(stack):
    _, headers = await signed_in(stack)
    data(
        await stack.http.patch(
            ROUTE,
            headers=headers,
            json={"theme": {"primaryColor": "#000000", "mode": "light"}, "data": {"refreshInterval": "1m"}},
        )
    )
    exported = data(await stack.http.get(f"{ROUTE}/export", headers=headers))
    assert exported == data(await stack.http.get(ROUTE, headers=headers))

    data(await stack.http.post(f"{ROUTE}/reset", headers=headers))
    imported = data(await stack.http.post(f"{ROUTE}/import", headers=headers, json=exported))
    assert without_timestamp(imported) == without_timestamp(exported)
    assert imported["theme"] == {"primaryColor": "#000000", "mode": "light", "darkMode": False}
    assert data(await stack.http.get(ROUTE, headers=headers)) == imported


async def test_import_migrates_a_version_0_document(stack):
    _, headers = await signed_in(stack)
    legacy = {"version": 0, "darkMode": True, "theme": {"primaryColor": "#123456"}, "syncEnabled": False}
    imported = data(await stack.http.post(f"{ROUTE}/import", headers=headers, json=legacy))
    expected = {
        **DEFAULTS,
        "theme": {"primaryColor": "#123456", "mode": "dark", "darkMode": True},
        "syncEnabled": False,
    }
    assert without_timestamp(imported) == without_timestamp(expected)


async def test_import_of_a_future_version_is_rejected(stack):
    _, headers = await signed_in(stack)
    assert_error(
        await stack.http.post(f"{ROUTE}/import", headers=headers, json={"version": 2}), 422, "VALIDATION_ERROR"
    )
    assert data(await stack.http.get(ROUTE, headers=headers)) == DEFAULTS


async def test_advanced_is_hidden_and_read_only_below_level_2(stack):
    _, headers = await signed_in(stack)
    assert "advanced" not in data(await stack.http.get(ROUTE, headers=headers))
    assert "advanced" not in data(await stack.http.get(f"{ROUTE}/export", headers=headers))
    for document in ({"advanced": {"betaFeatures": True}}, {"advanced": {"betaFeatures": False}}):
        assert_error(
            await stack.http.patch(ROUTE, headers=headers, json=document), 403, "PREFERENCES_ADVANCED_FORBIDDEN"
        )
        assert_error(
            await stack.http.post(f"{ROUTE}/import", headers=headers, json={**DEFAULTS, **document}),
            403,
            "PREFERENCES_ADVANCED_FORBIDDEN",
        )
    # A level-1 export imports cleanly: it has no `advanced` to write.
    exported = data(await stack.http.get(f"{ROUTE}/export", headers=headers))
    assert "advanced" not in data(await stack.http.post(f"{ROUTE}/import", headers=headers, json=exported))


async def test_level_2_sees_and_writes_advanced(stack):
    user, headers = await signed_in(stack)
    await promoted_to_level_2(stack, user["id"])
    assert data(await stack.http.get(ROUTE, headers=headers))["advanced"] == {"betaFeatures": False}

    patched = data(
        await stack.http.patch(ROUTE, headers=headers, json={"advanced": {"betaFeatures": True, "tickDepth": 5}})
    )
    assert patched["advanced"] == {"betaFeatures": True, "tickDepth": 5}
    exported = data(await stack.http.get(f"{ROUTE}/export", headers=headers))
    assert exported["advanced"] == {"betaFeatures": True, "tickDepth": 5}
    data(await stack.http.post(f"{ROUTE}/reset", headers=headers))
    assert data(await stack.http.post(f"{ROUTE}/import", headers=headers, json=exported))["advanced"] == {
        "betaFeatures": True,
        "tickDepth": 5,
    }


UNSTORABLE_BODIES = {
    "overflowing number": b'{"notifications": {"alertThresholds": {"profitThreshold": 1e999}}}',
    "Infinity": b'{"notifications": {"alertThresholds": {"lossThreshold": Infinity}}}',
    "NaN": b'{"data": {"tablePreferences": {"pageSize": NaN}}}',
    "lone surrogate": b'{"theme": {"primaryColor": "\\ud800"}}',
    "lone surrogate in a key": b'{"advanced": {"\\udfff": true}}',
    "NaN in advanced": b'{"advanced": {"betaFeatures": true, "zoom": [1, NaN]}}',
    "integer beyond 64 bits": b'{"advanced": {"seed": 123456789012345678901234567890}}',
}


async def test_numbers_and_text_json_cannot_store_are_refused_and_nothing_changes(stack):
    user, headers = await signed_in(stack)
    await promoted_to_level_2(stack, user["id"])  # so that `advanced`, the free-form section, is writable
    raw = {**headers, "content-type": "application/json"}
    data(await stack.http.patch(ROUTE, headers=headers, json={"theme": {"mode": "dark"}}))
    before = data(await stack.http.get(ROUTE, headers=headers))
    for body in UNSTORABLE_BODIES.values():
        assert_error(await stack.http.patch(ROUTE, headers=raw, content=body), 422, "VALIDATION_ERROR")
        # An import carries a whole document; the same values are refused there too.
        document = body.replace(b"{", b'{"version": 1, ', 1)
        assert_error(await stack.http.post(f"{ROUTE}/import", headers=raw, content=document), 422, "VALIDATION_ERROR")
    assert data(await stack.http.get(ROUTE, headers=headers)) == before


def test_the_preferences_model_itself_refuses_what_json_cannot_store():
    """The rule lives with the document, whatever reads the JSON (a lenient parser, a stored row, a script)."""
    from pydantic import ValidationError

    from domain.preferences import Preferences

    unstorable = [
        {"notifications": {"alertThresholds": {"profitThreshold": float("inf")}}},
        {"notifications": {"alertThresholds": {"lossThreshold": float("nan")}}},
        {"advanced": {"zoom": [1.0, float("-inf")]}},
        {"theme": {"primaryColor": "\ud800"}},
        {"advanced": {"\udfff": True}},
        {"lastUpdated": "2026-01-01\udc80"},
        {"advanced": {"seed": -(2**63) - 1}},
    ]
    for document in unstorable:
        try:
            Preferences.model_validate(document)
        except ValidationError as refused:
            assert "not a finite number within 64 bits or valid text" in str(refused)
        else:
            raise AssertionError(f"accepted {document!r}")
    assert Preferences.model_validate({"advanced": {"zoom": [1.5, 2**63]}, "theme": {"primaryColor": "#ü"}})

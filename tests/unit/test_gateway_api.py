"""The gateway's public surface is what the controller was promised (issue 4's interface)."""

from __future__ import annotations

import inspect

import kaip.local.gateway as gateway


def test_exported_names() -> None:
    assert sorted(gateway.__all__) == [
        "Backend",
        "Gateway",
        "LoadSample",
        "RevisionStats",
        "Route",
    ]


def test_gateway_signature_matches_the_agreed_interface() -> None:
    params = inspect.signature(gateway.Gateway).parameters
    agreed = ["host", "port", "hold_timeout_s", "max_held", "on_demand", "control_url"]
    assert list(params)[: len(agreed)] == agreed
    assert all(params[name].kind is inspect.Parameter.KEYWORD_ONLY for name in params)
    assert (params["host"].default, params["port"].default) == ("127.0.0.1", 8080)
    assert (params["hold_timeout_s"].default, params["max_held"].default) == (30.0, 1000)
    assert params["response_timeout_s"].default == 60.0  # Routes may set their own
    for method in ("start", "stop"):
        assert inspect.iscoroutinefunction(getattr(gateway.Gateway, method))
    for method in ("set_routes", "take_stats", "load"):
        assert not inspect.iscoroutinefunction(getattr(gateway.Gateway, method))

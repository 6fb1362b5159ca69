"""The public surface: everything in `dynamics.__all__` exists, and no aiohttp type is part of it."""

from __future__ import annotations

import importlib

import dynamics

MODULES = ["errors", "events", "odata", "odata_query", "templates", "enrich", "plans", "workflow"]


def test_all_names_exist() -> None:
    assert sorted(dynamics.__all__) == sorted(set(dynamics.__all__))
    for name in dynamics.__all__:
        assert getattr(dynamics, name) is not None, name
    for module in MODULES:
        mod = importlib.import_module(f"dynamics.{module}")
        assert mod.__doc__, module
        for name in mod.__all__:
            assert hasattr(mod, name), f"dynamics.{module}.{name}"


def test_every_error_is_a_dynamics_error() -> None:
    for name in dynamics.__all__:
        obj = getattr(dynamics, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, dynamics.DynamicsError), name
    assert dynamics.ODataThrottled(3).transient and dynamics.ODataUnavailable(503).transient
    assert not dynamics.ODataBadRequest(400).transient

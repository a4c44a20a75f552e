"""The crack_ops plugin is registered through the installed distribution's ``airflow.plugins`` entry point."""

from __future__ import annotations

import warnings
from importlib.metadata import entry_points


def test_the_entry_point_loads_the_plugin_class():
    """``airflow.plugins`` names crack_ops.plugin:CrackOpsPlugin (pip install -e . registers it; no plugins folder)."""
    (entry,) = [entry for entry in entry_points(group="airflow.plugins") if entry.name == "crack_ops"]
    assert entry.value == "crack_ops.plugin:CrackOpsPlugin"
    with warnings.catch_warnings():  # Starlette's notice about httpx (via Airflow's API security module)
        warnings.simplefilter("ignore")
        plugin = entry.load()
    assert plugin.name == "crack_ops"
    assert [app["url_prefix"] for app in plugin.fastapi_apps] == ["/crack-ops"]


def test_the_ops_page_template_ships_with_the_package():
    """The ops view's Jinja template is package data of crack_ops (the wheel carries it)."""
    from importlib.resources import files

    assert "<html" in files("crack_ops").joinpath("templates/ops.html").read_text(encoding="utf-8").lower()

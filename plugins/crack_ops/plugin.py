"""Registers the crack ops view with Airflow: a FastAPI app at ``/crack-ops`` and a nav entry.

Airflow finds this class through the ``airflow.plugins`` entry point of the installed
``crack-model`` distribution (pyproject.toml), not through the plugins folder. The app
(``crack_ops.ops_view``) protects every route itself: Airflow mounts plugin apps without
authentication. The external view embeds the page in the UI at ``plugin/crack-ops``, under the
"Browse" menu; its ``href`` is relative, so it works behind a proxy with a base URL.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from crack_ops.ops_view import URL_PREFIX, create_app


class CrackOpsPlugin(AirflowPlugin):
    """The crack workflow's operator page."""

    name = "crack_ops"
    # Plain list annotations, as AirflowPlugin declares them (ClassVar would clash with its declarations).
    fastapi_apps: list[Any] = [  # noqa: RUF012
        {"app": create_app(), "url_prefix": URL_PREFIX, "name": "Crack ops"},
    ]
    external_views: list[Any] = [  # noqa: RUF012
        {
            "name": "Crack ops",
            "href": "crack-ops/",
            "destination": "nav",
            "url_route": "crack-ops",
            "category": "browse",
        }
    ]

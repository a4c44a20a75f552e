"""The one way the library renders HTML: Jinja2 templates shipped in a package, always autoescaped.

Each package that writes a page keeps its templates in ``<package>/templates/*.html.j2`` (listed in
``[tool.setuptools.package-data]``) and renders them with ``render(package, template, **context)``,
passing formatting helpers as functions in the context. Every ``{{ value }}`` is HTML-escaped, so
object keys, slice names and messages taken from uploads cannot inject markup; code never escapes
by hand.
"""

from __future__ import annotations

import functools
from typing import Any

import jinja2


@functools.cache
def environment(package: str) -> jinja2.Environment:
    """The (cached) Jinja environment for ``<package>/templates``: autoescape on, undefined names are errors."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(package: str, template: str, **context: Any) -> str:
    """Render ``<package>/templates/<template>`` with ``context`` (values, and helper functions the template calls)."""
    return environment(package).get_template(template).render(**context)

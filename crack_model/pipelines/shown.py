"""Uploads' names as the plugin shows and logs them (the plugin reaches the library through ``pipelines`` only).

``module_logger``: a logger whose ``%s`` values show their control characters as escapes (``core/log_lines.py``);
``shown_key``: a name or a text quoting one, with them escaped, for a page or a line of text.
"""

from __future__ import annotations

from crack_model.core.log_lines import module_logger
from crack_model.core.object_keys import shown_key

__all__ = ["module_logger", "shown_key"]

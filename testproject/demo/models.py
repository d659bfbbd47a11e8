"""No models: the module exists so that ``post_migrate`` is sent to this app."""

from __future__ import annotations

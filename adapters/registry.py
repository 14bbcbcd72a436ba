"""Discovery of adapters through the ``fieldgate.adapters`` entry-point group.

Built-in and third-party adapters are found the same way: a distribution declares
``[project.entry-points."fieldgate.adapters"] name = "package.module:plugin"`` where
``plugin`` is an :class:`adapters.base.AdapterPlugin` whose ``name`` equals the
entry-point name.
"""

from __future__ import annotations

import logging
from functools import cache
from importlib.metadata import entry_points

from adapters.base import AdapterPlugin
from gateway.errors import ConfigError

GROUP = "fieldgate.adapters"

log = logging.getLogger(__name__)


@cache
def plugins() -> dict[str, AdapterPlugin]:
    """All installed adapters by name. A plugin that fails to load is logged and skipped,
    so one broken third-party package cannot take the gateway down."""
    found: dict[str, AdapterPlugin] = {}
    for ep in entry_points(group=GROUP):
        try:
            plugin = ep.load()
        except Exception:
            log.exception("adapter entry point %r (%s) failed to load", ep.name, ep.value)
            continue
        if not isinstance(plugin, AdapterPlugin):
            log.error("adapter entry point %r is %r, not an AdapterPlugin", ep.name, plugin)
            continue
        if plugin.name != ep.name:
            log.error("adapter entry point %r names its plugin %r", ep.name, plugin.name)
            continue
        found[ep.name] = plugin
    return found


def get(name: str) -> AdapterPlugin:
    """The adapter registered as ``name``; raises :class:`ConfigError` listing the known ones."""
    try:
        return plugins()[name]
    except KeyError:
        known = ", ".join(sorted(plugins())) or "none"
        raise ConfigError(f"unknown adapter type {name!r} (installed: {known})") from None

"""The one place that bridges Home Assistant releases 2025.4 … 2026.x."""

from __future__ import annotations

import inspect

from homeassistant.helpers.storage import Store

try:  # HA 2026.x validates schemas with probatio, the successor of voluptuous.
    import probatio as vol  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - HA before 2026 ships voluptuous only
    import voluptuous as vol  # type: ignore[no-redef,unused-ignore]

#: ``Store(serialize_in_event_loop=False)`` (HA 2025.12+) encodes in an executor
#: thread; older releases encode in the loop, so the payload is kept compact.
STORE_OFF_LOOP = "serialize_in_event_loop" in inspect.signature(Store.__init__).parameters

__all__ = ["STORE_OFF_LOOP", "vol"]

"""The one place that bridges Home Assistant releases 2025.4 … 2026.x."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from homeassistant import config_entries
from homeassistant.helpers.storage import Store
from homeassistant.helpers.update_coordinator import UpdateFailed

try:  # HA 2026.x validates schemas with probatio, the successor of voluptuous.
    import probatio as vol  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - HA before 2026 ships voluptuous only
    import voluptuous as vol  # type: ignore[no-redef,unused-ignore]

#: Whether the options flow reloads the entry itself (``OptionsFlowWithReload``,
#: newer releases than 2025.4). Update listeners are refused beside it, and
#: they made a reauth reload the entry twice (HA 2026.10 warns that this
#: breaks in 2026.12); 2025.4 reloads through an update listener.
OPTIONS_FLOW_RELOADS = hasattr(config_entries, "OptionsFlowWithReload")
if TYPE_CHECKING:  # the same interface on every release
    OptionsFlowBase = config_entries.OptionsFlow
else:
    OptionsFlowBase = getattr(config_entries, "OptionsFlowWithReload", config_entries.OptionsFlow)

#: ``Store(serialize_in_event_loop=False)`` (HA 2025.12+) encodes in an executor
#: thread; older releases encode in the loop, so the payload is kept compact.
STORE_OFF_LOOP = "serialize_in_event_loop" in inspect.signature(Store.__init__).parameters


#: ``UpdateFailed(retry_after=…)`` (newer releases than 2025.4) moves the next
#: scheduled poll to when the server asked to be asked again.
_UPDATE_FAILED_RETRY_AFTER = "retry_after" in inspect.signature(UpdateFailed).parameters


def update_failed(retry_after: float | None, **kwargs: Any) -> UpdateFailed:
    """``UpdateFailed``, with ``retry_after`` where Home Assistant takes it.

    Older releases poll at the usual interval instead; the coordinator's own
    back-off keeps every sync away until then on both.
    """
    if retry_after is not None and _UPDATE_FAILED_RETRY_AFTER:
        kwargs["retry_after"] = retry_after
    return UpdateFailed(**kwargs)


__all__ = ["OPTIONS_FLOW_RELOADS", "STORE_OFF_LOOP", "OptionsFlowBase", "update_failed", "vol"]

"""Config flow: pick the server kind, connect, choose the TV libraries.

Every error the clients can raise is mapped to a form error in one place
(``_ERRORS``); a URL that is not one is refused before any request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
import ipaddress
from typing import Any
import uuid

from homeassistant.config_entries import (
    SOURCE_REAUTH,
    ConfigEntry,
    ConfigEntryState,
    ConfigFlow,
    ConfigFlowResult,
)
from homeassistant.const import (
    CONF_PASSWORD,
    CONF_TOKEN,
    CONF_URL,
    CONF_USERNAME,
    CONF_VERIFY_SSL,
)
from homeassistant.core import callback
from homeassistant.data_entry_flow import UnknownFlow
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import (
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo
from homeassistant.helpers.typing import DiscoveryInfoType
from yarl import URL

from . import discovery
from .api import plextv
from .api.discovery import FoundServer, discover
from .api.errors import (
    MediaServerAuthError,
    MediaServerError,
    MediaServerForbiddenError,
    MediaServerHostNotFoundError,
    MediaServerRedirectError,
    MediaServerSSLError,
    MediaServerTimeoutError,
    WrongServerError,
)
from .api.jellyfin import JellyfinClient
from .api.models import Library, ServerInfo, ServerKind
from .api.plex import PlexClient
from .api.plextv import (
    PlexPin,
    PlexServerResource,
    PlexTvClient,
    PlexTvPinExpiredError,
    PlexTvSignInTimeoutError,
)
from .client import create_client
from .compat import OptionsFlowBase, vol
from .const import (
    CONF_CLIENT_ID,
    CONF_DEVICE_ID,
    CONF_EXCLUDE_KEYWORDS,
    CONF_FULL_SYNC_DAYS,
    CONF_HIDE_SPECIALS,
    CONF_LIBRARIES,
    CONF_MAX_CONCURRENCY,
    CONF_NEW_EPISODE_DAYS,
    CONF_PUSH_SCAN_INTERVAL,
    CONF_PUSH_UPDATES,
    CONF_SCAN_INTERVAL,
    CONF_SERVER,
    CONF_SERVER_TYPE,
    CONF_USER_ID,
    DEFAULT_OPTIONS,
    DOMAIN,
    LOGGER,
)

URL_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.URL))
SECRET_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))
#: Seconds to wait for an address found by discovery, or the one an entry
#: had, to say which server it is (requests to a server otherwise wait 30 s).
ADDRESS_CHECK_TIMEOUT = 5.0
#: Seconds the add-a-server flow listens for servers on the network (one on
#: the LAN answers at once; the menu is on screen meanwhile).
NEARBY_LISTEN = 1.0


class _FlowError(Exception):
    """A form error, by its translation key."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _is_ip(host: str | None) -> bool:
    try:
        ipaddress.ip_address(host or "")
    except ValueError:
        return False
    return True


def _check_url(url: str) -> str:
    """Return the server's base URL; refuse what is not an http(s) URL.

    An address copied from the browser names a page of the server's web app
    (Plex ``/web/index.html#!/``, Jellyfin ``/web/#/home.html``): the server
    is what comes before ``/web``. A base path (Jellyfin behind a reverse
    proxy at ``/jellyfin``) stays; the query, fragment and trailing slash go.
    """
    try:
        parsed = URL(url.strip())
    except ValueError as err:
        raise _FlowError("invalid_url") from err
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise _FlowError("invalid_url")
    path = parsed.path
    if "/web/" in f"{path}/":
        path = f"{path}/".partition("/web/")[0]
    return str(parsed.with_path(path).with_query(None).with_fragment(None)).rstrip("/")


@contextmanager
def _form_errors(wrong_server: str) -> Iterator[None]:
    """Map every client failure to its form error: the one place that decides."""
    try:
        yield
    except WrongServerError as err:
        raise _FlowError(wrong_server) from err
    except MediaServerAuthError as err:
        raise _FlowError("invalid_auth") from err
    except MediaServerForbiddenError as err:
        raise _FlowError("forbidden") from err
    except MediaServerHostNotFoundError as err:
        raise _FlowError("unknown_host") from err
    except MediaServerSSLError as err:
        raise _FlowError("ssl_error") from err
    except MediaServerTimeoutError as err:
        raise _FlowError("timeout") from err
    except MediaServerRedirectError as err:
        raise _FlowError("redirected") from err
    except MediaServerError as err:
        raise _FlowError("cannot_connect") from err
    except Exception as err:
        LOGGER.exception("Unexpected error while checking the server")
        raise _FlowError("unknown") from err


async def _validate(
    client: PlexClient | JellyfinClient, wrong_server: str
) -> tuple[ServerInfo, list[Library]]:
    """Identify the server and list its TV libraries."""
    with _form_errors(wrong_server):
        if isinstance(client, PlexClient):
            await client.identity()
        info = await client.server_info()
        libraries = await client.libraries()
    if not libraries:
        raise _FlowError("no_tv_libraries")
    return info, libraries


@dataclass(kw_only=True)
class _PlexSignIn:
    """A plex.tv sign-in in progress (the token field was left empty)."""

    plextv: PlexTvClient
    client_id: str
    verify_ssl: bool
    #: The URL the user typed, if any: it picks the server and the connection.
    url: str | None
    pin: PlexPin
    task: asyncio.Task[str] | None = None
    servers: list[PlexServerResource] = field(default_factory=list)


def _signin_data(signin: _PlexSignIn, url: str) -> dict[str, Any]:
    """An entry's connection data for ``url``, as the sign-in knows it (no token)."""
    return {
        CONF_SERVER_TYPE: ServerKind.PLEX.value,
        CONF_URL: url,
        CONF_VERIFY_SSL: signin.verify_ssl,
        CONF_CLIENT_ID: signin.client_id,
    }


def _without(user_input: Mapping[str, Any] | None, secret: str) -> dict[str, Any]:
    """What the user typed, to show again on the form, but the secret."""
    return {k: v for k, v in (user_input or {}).items() if k != secret}


def _library_selector(libraries: list[Library]) -> SelectSelector:
    return SelectSelector(
        SelectSelectorConfig(
            options=[SelectOptionDict(value=lib.id, label=lib.title) for lib in libraries],
            multiple=True,
        )
    )


class EpisodeSyncConfigFlow(ConfigFlow, domain=DOMAIN):
    """Add a Plex or Jellyfin server."""

    VERSION = 1

    def __init__(self) -> None:
        """Start with nothing known."""
        self._data: dict[str, Any] = {}
        self._info: ServerInfo | None = None
        self._libraries: list[Library] = []
        self._signin: _PlexSignIn | None = None
        #: Values to fill the first form with (a discovered server's address).
        self._suggested: dict[str, Any] = {}
        #: Servers on the network, looked for while the menu is shown.
        self._nearby: asyncio.Task[list[FoundServer]] | None = None

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: Any) -> EpisodeSyncOptionsFlow:
        """Options: intervals, libraries, concurrency."""
        return EpisodeSyncOptionsFlow()

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Choose the kind of server; meanwhile, look for servers on the network."""
        self._nearby = self.hass.async_create_task(
            discover(discovery.PROBES, listen=NEARBY_LISTEN), eager_start=True
        )
        return self.async_show_menu(step_id="user", menu_options=["plex", "jellyfin"])

    async def _suggest_nearby(self, kind: ServerKind) -> None:
        """Fill the form with the address of a server of ``kind`` found nearby and not set up."""
        if self._nearby is None or self._suggested:
            return
        found, self._nearby = await self._nearby, None
        for server in found:
            if server.kind is kind and not self._entries_of(server.server_id, include_ignore=True):
                self._suggested = {CONF_URL: server.url}
                return

    def _install_id(self, key: str) -> str:
        """The install's Plex client id or Jellyfin DeviceId: one per flow, however many tries.

        The servers list a device per id (and Jellyfin keeps a session per
        DeviceId): a new one per failed try would leave a device behind each time.
        """
        return str(self._data.setdefault(key, uuid.uuid4().hex))

    def _entries_of(self, server_id: str, *, include_ignore: bool) -> list[ConfigEntry]:
        """The server's entries (a Jellyfin entry is one user's: ``<ServerId>_<UserId>``)."""
        return [
            entry
            for entry in self._async_current_entries(include_ignore=include_ignore)
            if entry.unique_id == server_id or (entry.unique_id or "").startswith(f"{server_id}_")
        ]

    async def async_step_integration_discovery(
        self, discovery_info: DiscoveryInfoType
    ) -> ConfigFlowResult:
        """A server found on the local network: its form, with the address filled in."""
        server_id, url = str(discovery_info["server_id"]), str(discovery_info["url"])
        # One discovered flow per server; servers set up or ignored are not offered.
        await self.async_set_unique_id(server_id)
        entries = self._entries_of(server_id, include_ignore=False)
        for entry in entries:
            await self._follow_move(entry, url, server_id)
        if entries:
            return self.async_abort(reason="already_configured")
        self._abort_if_unique_id_configured()  # an ignored discovery of it
        self.context["title_placeholders"] = {"name": str(discovery_info["name"])}
        self._suggested = {CONF_URL: url}
        if discovery_info["kind"] == ServerKind.PLEX.value:
            return await self.async_step_plex()
        return await self.async_step_jellyfin()

    async def _follow_move(self, entry: ConfigEntry, url: str, server_id: str) -> None:
        """Point an entry at the address its server was found at, if it moved.

        Only an address entered as ``http://<IP address>`` is replaced: the
        kind a new DHCP lease breaks. A host name follows the server by
        itself, an https address names its certificate's host. The entry's
        address must have stopped answering as the server (a server with two
        network cards answers discovery on either), and the found one must
        answer as it: a Jellyfin server in a container announces the
        container's address unless told its published one.
        """
        old = URL(entry.data[CONF_URL])
        if url == entry.data[CONF_URL] or old.scheme != "http" or not _is_ip(old.host):
            return
        if await self._answers_as(entry, entry.data[CONF_URL], server_id):
            return
        if not await self._answers_as(entry, url, server_id):
            return
        LOGGER.info("%s moved to %s; the entry follows it", entry.title, url)
        self.hass.config_entries.async_update_entry(entry, data={**entry.data, CONF_URL: url})
        self.hass.config_entries.async_schedule_reload(entry.entry_id)

    async def _answers_as(self, entry: ConfigEntry, url: str, server_id: str) -> bool:
        """Whether ``url`` answers as the entry's server."""
        return await self._server_at({**entry.data, CONF_URL: url}, entry.title) == server_id

    async def _server_at(self, data: Mapping[str, Any], title: str) -> str | None:
        """The id of the server at ``data``'s address, or None, asked without credentials.

        A server that just answered discovery answers this at once; the
        address an entry left may hold the connection, so the wait is short.
        """
        try:
            found = await self._public_identity(data, wait=ADDRESS_CHECK_TIMEOUT)
        except MediaServerError as err:
            LOGGER.debug("%s: %s does not answer as a server: %s", title, data[CONF_URL], err)
            return None
        return found.server_id

    async def _public_identity(
        self, data: Mapping[str, Any], *, wait: float | None = None
    ) -> ServerInfo:
        """The server at ``data``'s address, asked on a route that needs no credentials.

        None are sent: anything on the network can answer a discovery probe,
        and an address typed in may be another server than the one the
        credentials are for.
        """
        client = create_client(self.hass, {**data, CONF_TOKEN: ""}, timeout=wait)
        if isinstance(client, PlexClient):
            return await client.identity()
        return await client.public_info()

    async def async_step_zeroconf(self, discovery_info: ZeroconfServiceInfo) -> ConfigFlowResult:
        """A Plex server announced over mDNS: offered as one found by GDM is.

        Home Assistant's zeroconf matches the type in manifest.json (the one
        Home Assistant's own Plex integration lists) before Episode Sync has
        an entry, so this finds the first server, which the GDM probe of
        ``discovery.py`` cannot: it runs only once an entry exists. The
        announcement carries no server id; the address is asked for it.
        """
        url = str(URL.build(scheme="http", host=discovery_info.host, port=discovery_info.port))
        # Announced again at every start: a server set up at this address costs no request.
        if any(entry.data.get(CONF_URL) == url for entry in self._async_current_entries()):
            return self.async_abort(reason="already_configured")
        # The install's client id from the first request on, if the user goes on.
        data = {
            CONF_CLIENT_ID: self._install_id(CONF_CLIENT_ID),
            CONF_SERVER_TYPE: ServerKind.PLEX.value,
            CONF_URL: url,
        }
        name = discovery_info.name.removesuffix(f".{discovery_info.type}")
        if (server_id := await self._server_at(data, name)) is None:
            return self.async_abort(reason="not_a_plex_server")
        return await self.async_step_integration_discovery(
            {"kind": ServerKind.PLEX.value, "server_id": server_id, "name": name, "url": url}
        )

    # -- Plex -------------------------------------------------------------------------

    async def _plex(
        self, user_input: dict[str, Any]
    ) -> tuple[dict[str, Any], ServerInfo, list[Library]]:
        # With a token the URL is required; only the plex.tv sign-in finds it.
        if not (user_input.get(CONF_URL) or "").strip():
            raise _FlowError("url_required")
        data = {
            CONF_SERVER_TYPE: ServerKind.PLEX.value,
            CONF_URL: _check_url(user_input[CONF_URL]),
            CONF_TOKEN: user_input[CONF_TOKEN].strip(),
            CONF_VERIFY_SSL: user_input.get(CONF_VERIFY_SSL, True),
            # Reauth passes the entry's data: the install keeps its client id.
            CONF_CLIENT_ID: user_input.get(CONF_CLIENT_ID) or self._install_id(CONF_CLIENT_ID),
        }
        info, libraries = await _validate(create_client(self.hass, data), "not_a_plex_server")
        return data, info, libraries

    async def async_step_plex(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Connect to a Plex server with a token, or (token left empty) sign in with plex.tv."""
        await self._suggest_nearby(ServerKind.PLEX)
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                if not (user_input.get(CONF_TOKEN) or "").strip():
                    await self._start_signin(user_input, self._install_id(CONF_CLIENT_ID))
                    return await self.async_step_plex_signin()
                data, info, libraries = await self._plex(user_input)
            except _FlowError as err:
                errors["base"] = err.key
            else:
                await self.async_set_unique_id(info.server_id)
                self._abort_if_unique_id_configured()
                self._data, self._info, self._libraries = data, info, libraries
                return await self.async_step_libraries()
        return self.async_show_form(
            step_id="plex",
            data_schema=self.add_suggested_values_to_schema(
                vol.Schema(
                    {
                        vol.Optional(CONF_URL): URL_SELECTOR,
                        vol.Optional(CONF_TOKEN): SECRET_SELECTOR,
                        vol.Required(CONF_VERIFY_SSL, default=True): bool,
                    }
                ),
                {**self._suggested, **_without(user_input, CONF_TOKEN)},
            ),
            errors=errors,
        )

    # -- Plex: sign in with plex.tv ---------------------------------------------------------

    async def _start_signin(self, user_input: Mapping[str, Any], client_id: str) -> None:
        """Ask plex.tv for a PIN; a URL the user typed is checked now and used later."""
        url = (user_input.get(CONF_URL) or "").strip()
        checked = _check_url(url) if url else None
        client = PlexTvClient(async_get_clientsession(self.hass), client_id=client_id)
        try:
            pin = await client.create_pin()
        except MediaServerError as err:
            # plex.tv failed, not an address the user typed: say so.
            raise _FlowError("plextv_unreachable") from err
        self._signin = _PlexSignIn(
            plextv=client,
            client_id=client_id,
            verify_ssl=user_input.get(CONF_VERIFY_SSL, True),
            url=checked,
            pin=pin,
        )

    async def async_step_plex_signin(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Show plex.tv's sign-in page while a background task polls the PIN.

        An external step (developer docs, data entry flow, "External Step &
        External Step Done"): the frontend opens the page. plex.tv calls nobody
        back, so the polling task continues the flow when it ends, the way the
        docs' "Show Progress" example does (a new task that calls
        ``flow.async_configure``, avoiding a deadlock); this step then marks the
        external step done and the frontend moves on to ``plex_signin_done``.
        """
        signin = self._signin
        assert signin is not None
        if signin.task is None:
            signin.task = self.hass.async_create_background_task(
                signin.plextv.wait_for_token(signin.pin), name=f"{DOMAIN} plex.tv sign-in"
            )
            signin.task.add_done_callback(self._signin_finished)
        if not signin.task.done():
            return self.async_external_step(
                step_id="plex_signin",
                url=signin.plextv.auth_url(signin.pin),
                description_placeholders={"minutes": f"{plextv.PIN_TIMEOUT / 60:g}"},
            )
        return self.async_external_step_done(next_step_id="plex_signin_done")

    @callback
    def _signin_finished(self, task: asyncio.Task[str]) -> None:
        """The PIN poll ended: continue the flow, unless the flow was closed."""
        if task.cancelled():
            return
        # Mark a failure as retrieved: the flow may be gone before it reads it.
        task.exception()

        async def continue_flow() -> None:
            with suppress(UnknownFlow):
                await self.hass.config_entries.flow.async_configure(flow_id=self.flow_id)

        self.hass.async_create_task(continue_flow())

    @callback
    def async_remove(self) -> None:
        """The flow was closed or finished: stop polling plex.tv."""
        if self._signin is not None and self._signin.task is not None:
            self._signin.task.cancel()

    async def async_step_plex_signin_done(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Signed in (or not): list the account's servers, pick one."""
        signin = self._signin
        assert signin is not None
        assert signin.task is not None
        # plex.tv's own failures end the flow: there is nothing to correct on a form.
        try:
            servers = await signin.plextv.servers(signin.task.result())
        except PlexTvPinExpiredError:
            return self.async_abort(reason="signin_declined")
        except PlexTvSignInTimeoutError:
            return self.async_abort(reason="signin_timeout")
        except MediaServerAuthError:
            return self.async_abort(reason="invalid_auth")
        except MediaServerError:
            return self.async_abort(reason="cannot_connect")
        if self.source == SOURCE_REAUTH:
            unique_id = self._get_reauth_entry().unique_id
            servers = [server for server in servers if server.machine_id == unique_id]
            if not servers:
                return self.async_abort(reason="server_not_on_account")
        if not servers:
            return self.async_abort(reason="no_servers")
        if signin.url is not None:
            # The URL the user typed names the server: no choice to make. One
            # plex.tv does not list (a container's own address) is asked who it is.
            named = [s for s in servers if s.matches(signin.url)]
            if not named:
                machine_id = await self._server_at(
                    _signin_data(signin, signin.url), "The address typed in"
                )
                named = [s for s in servers if s.machine_id == machine_id]
            servers = named[:1] or servers
        signin.servers = servers
        if len(servers) == 1:
            return await self.async_step_plex_server({CONF_SERVER: servers[0].machine_id})
        return await self.async_step_plex_server()

    async def async_step_plex_server(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Choose one of the account's servers (shown again with an error if it fails)."""
        signin = self._signin
        assert signin is not None
        errors: dict[str, str] = {}
        if user_input is not None:
            server = next(s for s in signin.servers if s.machine_id == user_input[CONF_SERVER])
            try:
                return await self._use_plex_server(signin, server)
            except _FlowError as err:
                errors["base"] = err.key
        return self.async_show_form(
            step_id="plex_server",
            data_schema=vol.Schema(
                {
                    vol.Required(
                        CONF_SERVER, default=(user_input or {}).get(CONF_SERVER, vol.UNDEFINED)
                    ): SelectSelector(
                        SelectSelectorConfig(
                            options=[
                                SelectOptionDict(value=s.machine_id, label=s.name)
                                for s in signin.servers
                            ]
                        )
                    )
                }
            ),
            errors=errors,
        )

    async def _use_plex_server(
        self, signin: _PlexSignIn, server: PlexServerResource
    ) -> ConfigFlowResult:
        """Reach the server at its best address, then validate as the token path does.

        The server's own ``accessToken`` is stored, not the account token: a
        shared server accepts only its own, and the account token is never kept.
        An address that does not answer ``/identity`` as this server is skipped.
        The address typed in (in a reauth, the entry's) comes first even when
        plex.tv does not list it (or lists it as a shared server's local one):
        the ones it lists may all be out of Home Assistant's reach (a
        container's own address, plex.direct names that DNS-rebind protection
        refuses).
        """
        connections = server.preferred_connections(signin.url)
        addresses = [(c.uri, c.location) for c in connections]
        if signin.url is not None and not any(c.matches(signin.url) for c in connections):
            addresses.insert(0, (signin.url, "typed"))
        for uri, location in addresses:
            data = {**_signin_data(signin, uri.rstrip("/")), CONF_TOKEN: server.access_token}
            client = create_client(self.hass, data)
            assert isinstance(client, PlexClient)
            try:
                identity = await client.identity()
            except MediaServerError as err:
                LOGGER.debug("%s: %s address skipped: %s", server.name, location, err)
                continue
            if identity.server_id != server.machine_id:
                LOGGER.debug("%s: %s address is another server", server.name, location)
                continue
            info, libraries = await _validate(client, "not_a_plex_server")
            await self.async_set_unique_id(info.server_id)
            if self.source == SOURCE_REAUTH:
                entry = self._get_reauth_entry()
                return self.async_update_reload_and_abort(entry, data={**entry.data, **data})
            self._abort_if_unique_id_configured()
            self._data, self._info, self._libraries = data, info, libraries
            return await self.async_step_libraries()
        raise _FlowError("server_unreachable")

    # -- Jellyfin -----------------------------------------------------------------------

    async def _jellyfin(
        self, url: str, username: str, password: str, verify_ssl: bool, device_id: str
    ) -> tuple[dict[str, Any], ServerInfo, list[Library]]:
        data = {
            CONF_SERVER_TYPE: ServerKind.JELLYFIN.value,
            CONF_URL: _check_url(url),
            CONF_USERNAME: username,
            CONF_VERIFY_SSL: verify_ssl,
            CONF_DEVICE_ID: device_id,
        }
        client = create_client(self.hass, data)
        assert isinstance(client, JellyfinClient)
        with _form_errors("not_a_jellyfin_server"):
            await client.public_info()
            login = await client.login(username, password)
        data[CONF_TOKEN] = login.access_token
        data[CONF_USER_ID] = login.user_id
        info, libraries = await _validate(create_client(self.hass, data), "not_a_jellyfin_server")
        return data, info, libraries

    async def async_step_jellyfin(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Sign in to a Jellyfin server; the password is used once and never stored."""
        await self._suggest_nearby(ServerKind.JELLYFIN)
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                data, info, libraries = await self._jellyfin(
                    user_input[CONF_URL],
                    user_input[CONF_USERNAME],
                    user_input.get(CONF_PASSWORD, ""),
                    user_input.get(CONF_VERIFY_SSL, True),
                    self._install_id(CONF_DEVICE_ID),
                )
            except _FlowError as err:
                errors["base"] = err.key
            else:
                await self.async_set_unique_id(f"{info.server_id}_{data[CONF_USER_ID]}")
                self._abort_if_unique_id_configured()
                self._data, self._info, self._libraries = data, info, libraries
                return await self.async_step_libraries()
        return self.async_show_form(
            step_id="jellyfin",
            data_schema=self.add_suggested_values_to_schema(
                vol.Schema(
                    {
                        vol.Required(CONF_URL): URL_SELECTOR,
                        vol.Required(CONF_USERNAME): str,
                        vol.Optional(CONF_PASSWORD, default=""): SECRET_SELECTOR,
                        vol.Required(CONF_VERIFY_SSL, default=True): bool,
                    }
                ),
                {**self._suggested, **_without(user_input, CONF_PASSWORD)},
            ),
            errors=errors,
        )

    # -- libraries ------------------------------------------------------------------------

    async def async_step_libraries(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Choose the TV libraries to mirror (all by default)."""
        assert self._info is not None
        if user_input is not None and user_input.get(CONF_LIBRARIES):
            self._close_discovered(self._info.server_id)
            return self.async_create_entry(
                title=self._info.name,
                data=self._data,
                options={CONF_LIBRARIES: list(user_input[CONF_LIBRARIES]), **DEFAULT_OPTIONS},
            )
        return self.async_show_form(
            step_id="libraries",
            data_schema=vol.Schema(
                {
                    vol.Required(
                        CONF_LIBRARIES, default=[lib.id for lib in self._libraries]
                    ): _library_selector(self._libraries)
                }
            ),
            errors={"base": "no_libraries_selected"} if user_input is not None else {},
        )

    def _close_discovered(self, server_id: str) -> None:
        """Close the other flows offering this server as found on the network.

        Home Assistant closes those with the new entry's unique id; a Jellyfin
        entry's is one user's (``<ServerId>_<UserId>``), a discovered flow's
        the server's, so it would stay offered.
        """
        for flow in self._async_in_progress(include_uninitialized=True):
            if flow["flow_id"] != self.flow_id and flow["context"].get("unique_id") == server_id:
                self.hass.config_entries.flow.async_abort(flow["flow_id"])

    # -- reauth and reconfigure -------------------------------------------------------------

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        """The server refused our credentials: ask for new ones."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """A new Plex token (or, left empty, plex.tv), or the Jellyfin password."""
        entry = self._get_reauth_entry()
        plex = entry.data[CONF_SERVER_TYPE] == ServerKind.PLEX
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                if plex and not (user_input.get(CONF_TOKEN) or "").strip():
                    # The entry's client id and URL: the same install, the same address first.
                    await self._start_signin(entry.data, entry.data[CONF_CLIENT_ID])
                    return await self.async_step_plex_signin()
                if plex:
                    data, info, _ = await self._plex({**entry.data, **user_input})
                    unique_id = info.server_id
                else:
                    data, info, _ = await self._jellyfin(
                        entry.data[CONF_URL],
                        entry.data[CONF_USERNAME],
                        user_input.get(CONF_PASSWORD, ""),
                        entry.data.get(CONF_VERIFY_SSL, True),
                        # The same DeviceId: the server then retires the old token.
                        entry.data[CONF_DEVICE_ID],
                    )
                    unique_id = f"{info.server_id}_{data[CONF_USER_ID]}"
            except _FlowError as err:
                errors["base"] = err.key
            else:
                await self.async_set_unique_id(unique_id)
                self._abort_if_unique_id_mismatch(reason="unique_id_mismatch")
                return self.async_update_reload_and_abort(entry, data={**entry.data, **data})
        field = CONF_TOKEN if plex else CONF_PASSWORD
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=vol.Schema(
                {vol.Optional(field) if plex else vol.Optional(field, default=""): SECRET_SELECTOR}
            ),
            description_placeholders={"name": entry.title},
            errors=errors,
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """A new URL for the same server."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            data = dict(entry.data)
            plex = data[CONF_SERVER_TYPE] == ServerKind.PLEX
            wrong_server = "not_a_plex_server" if plex else "not_a_jellyfin_server"
            try:
                data[CONF_URL] = _check_url(user_input[CONF_URL])
                data[CONF_VERIFY_SSL] = user_input.get(CONF_VERIFY_SSL, True)
                # Which server answers there, before it is sent the entry's token
                # (unless it tells only with the token: Plex on some plex.direct
                # addresses, docs: plex §2.1; the identity is checked after).
                with _form_errors(wrong_server):
                    try:
                        found: str | None = (await self._public_identity(data)).server_id
                    except MediaServerAuthError:
                        found = None
                if found is not None and entry not in self._entries_of(found, include_ignore=False):
                    return self.async_abort(reason="unique_id_mismatch")
                info, _ = await _validate(create_client(self.hass, data), wrong_server)
            except _FlowError as err:
                errors["base"] = err.key
            else:
                unique_id = info.server_id if plex else f"{info.server_id}_{data[CONF_USER_ID]}"
                await self.async_set_unique_id(unique_id)
                self._abort_if_unique_id_mismatch(reason="unique_id_mismatch")
                return self.async_update_reload_and_abort(entry, data=data)
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                vol.Schema(
                    {
                        vol.Required(CONF_URL): URL_SELECTOR,
                        vol.Required(CONF_VERIFY_SSL, default=True): bool,
                    }
                ),
                user_input
                or {
                    CONF_URL: entry.data[CONF_URL],
                    CONF_VERIFY_SSL: entry.data.get(CONF_VERIFY_SSL, True),
                },
            ),
            errors=errors,
        )


#: Options entered with number selectors, stored as ints.
_WHOLE_NUMBERS = (
    CONF_SCAN_INTERVAL,
    CONF_NEW_EPISODE_DAYS,
    CONF_FULL_SYNC_DAYS,
    CONF_MAX_CONCURRENCY,
    CONF_PUSH_SCAN_INTERVAL,
)


class EpisodeSyncOptionsFlow(OptionsFlowBase):
    """Tunables of an entry; the libraries list comes from the server."""

    def _mirrored_titles(self) -> dict[str, str]:
        """The titles of the libraries the mirror holds (none while the entry is not loaded)."""
        if self.config_entry.state is not ConfigEntryState.LOADED:
            return {}
        mirror = self.config_entry.runtime_data.coordinator.mirror
        return {library.id: library.title for library in mirror.libraries.values()}

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Show and store the options."""
        errors: dict[str, str] = {}
        if user_input is not None and user_input.get(CONF_LIBRARIES):
            return self.async_create_entry(
                data={
                    **user_input,
                    # Number selectors hand back floats.
                    **{key: int(user_input[key]) for key in _WHOLE_NUMBERS},
                    CONF_EXCLUDE_KEYWORDS: user_input.get(CONF_EXCLUDE_KEYWORDS, "").strip(),
                }
            )
        if user_input is not None:
            errors["base"] = "no_libraries_selected"
        options = self.config_entry.options
        selected: list[str] = options.get(CONF_LIBRARIES, [])
        try:
            with _form_errors("cannot_connect"):
                libraries = await create_client(self.hass, self.config_entry.data).libraries()
        except _FlowError as err:
            # Unreachable (or refusing): keep the choice as it is, named as the mirror knows it.
            errors["base"] = err.key
            titles = self._mirrored_titles()
            libraries = [Library(id=i, title=titles.get(i, i)) for i in selected]
        else:
            # A library gone from the server cannot stay selected: the form offers it no more.
            listed = {library.id for library in libraries}
            selected = [i for i in selected if i in listed]

        def number(low: int, high: int, unit: str | None = None) -> NumberSelector:
            return NumberSelector(
                NumberSelectorConfig(min=low, max=high, step=1, mode=NumberSelectorMode.BOX)
                if unit is None
                else NumberSelectorConfig(
                    min=low, max=high, step=1, mode=NumberSelectorMode.BOX, unit_of_measurement=unit
                )
            )

        schema = vol.Schema(
            {
                vol.Required(CONF_SCAN_INTERVAL): number(1, 1440, "min"),
                vol.Required(CONF_NEW_EPISODE_DAYS): number(1, 365, "d"),
                vol.Required(CONF_FULL_SYNC_DAYS): number(1, 90, "d"),
                vol.Required(CONF_LIBRARIES): _library_selector(libraries),
                vol.Required(CONF_MAX_CONCURRENCY): number(1, 20),
                vol.Required(CONF_PUSH_UPDATES): bool,
                vol.Required(CONF_PUSH_SCAN_INTERVAL): number(1, 1440, "min"),
                vol.Optional(CONF_EXCLUDE_KEYWORDS): TextSelector(),
                vol.Required(CONF_HIDE_SPECIALS): bool,
            }
        )
        suggested = {
            **DEFAULT_OPTIONS,
            **options,
            CONF_LIBRARIES: selected,
            **(user_input or {}),
        }
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(schema, suggested),
            errors=errors,
        )

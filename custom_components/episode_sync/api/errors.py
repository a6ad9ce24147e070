"""One error hierarchy for every media-server client.

The integration maps these in one place each (coordinator, config flow):
auth errors start a reauth, connection errors make entities unavailable until
the server answers again, protocol errors make the sync engine fall back to a
full sync, and a 404 means the thing asked for is gone.
"""

from __future__ import annotations


class MediaServerError(Exception):
    """Base class of every error raised by the clients."""


class MediaServerConnectionError(MediaServerError):
    """The server could not be reached, timed out or reset the connection."""


class MediaServerTimeoutError(MediaServerConnectionError):
    """The server accepted the connection but did not answer in time."""


class MediaServerHostNotFoundError(MediaServerConnectionError):
    """The server's host name does not resolve (a typo, or a name only another network knows)."""


class MediaServerSSLError(MediaServerConnectionError):
    """The TLS handshake failed: most often a self-signed or expired certificate."""


class MediaServerAuthError(MediaServerError):
    """The server refused our credentials (HTTP 401, or 403 on Jellyfin's socket)."""


class MediaServerForbiddenError(MediaServerError):
    """HTTP 403: the server knows the account but refuses it this request.

    Jellyfin answers so when the user may not sign in from this device or is
    at their maximum number of sessions (a ``SecurityException``, docs:
    jellyfin §1: "error, no retry loop"). Neither a reauth (the same password
    is refused again) nor a protocol fault (a full sync would be refused
    too): the user has to change the account's settings on the server.
    """


class MediaServerProtocolError(MediaServerError):
    """The server answered, but not as the API promises.

    Unexpected status codes, HTML or XML where JSON was asked for, malformed or
    truncated JSON, and payloads missing required fields all land here.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        """Keep the HTTP status, when there was one, for callers that care."""
        super().__init__(message)
        self.status = status


class MediaServerRedirectError(MediaServerConnectionError):
    """A 3xx answer: the URL is not the server's own (http to https, a login page).

    Redirects are never followed: a token sent to wherever a proxy points
    could leak, and a login page is not the API. The target is kept out of
    the message because it may carry credentials in its query. A connection
    error, not a protocol one: the server was not reached at this URL, so a
    full sync would not help, and the identity probes do not mistake it for
    another kind of server.
    """

    def __init__(self, message: str, *, status: int) -> None:
        """Keep the HTTP status."""
        super().__init__(message)
        self.status = status


class MediaServerNotFoundError(MediaServerError):
    """HTTP 404 for a specific path (an item or a listing).

    Not a protocol fault, so never escalated to a full sync: a listing that
    answers 404 (a library deleted since it was listed, a proxy's transient
    404) means "retry later" (docs: plex §1), and one show's episodes that
    answer 404 mean that show is gone (docs: jellyfin §1, "treat as deleted";
    plex §1, "delete mirrored data only on a 404 for a specific item").
    """


class MediaServerUnavailableError(MediaServerConnectionError):
    """HTTP 429 or 5xx: the server (or a proxy before it) cannot serve us now.

    A transient state, not a protocol fault: the sync is retried at the next
    interval rather than escalated to a heavier full sync.
    """

    def __init__(self, message: str, *, status: int, retry_after: float | None) -> None:
        """Keep the status and how long the server asked us to wait."""
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class WrongServerError(MediaServerError):
    """The URL answers, but it is not the kind of server that was expected.

    Raised by the identity probes, so the config flow can tell a user who gave
    a Jellyfin URL to the Plex step (or a router's web page) what went wrong.
    """


class ServerChangedError(MediaServerError):
    """The URL now leads to another server than the entry's (another identity).

    Checked when a sync finds ids it cannot explain (SPEC §7): another server
    at the same address (a new IP lease, a second server) looks like that.
    """

    def __init__(self, name: str) -> None:
        """Keep the other server's name for the message."""
        super().__init__(f"the address now leads to another server ({name})")
        self.name = name

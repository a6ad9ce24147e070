"""Artwork fetched from a media server: the bytes and what kind of image they are.

Both clients fetch posters and stills through a transport of their own, apart
from the one the sync uses, so an image request never counts against a sync's
request budget nor moves its server clock (SPEC §7: a "request" is one a sync
makes).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import MediaServerProtocolError

#: Seconds an image may take: a card waits for it, a sync does not.
IMAGE_TIMEOUT = 15.0

#: Magic numbers of the formats Plex and Jellyfin serve artwork in.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaImage:
    """One image as the server sent it."""

    content: bytes
    content_type: str


def media_image(body: bytes, what: str) -> MediaImage:
    """Wrap an image body, typed by its first bytes.

    The type is read from the bytes rather than taken from the server's
    ``Content-Type``: whatever is proxied to a browser is then an image of a
    known kind, never an HTML error page a proxy in front of the server made.
    """
    for magic, content_type in _SIGNATURES:
        if body.startswith(magic):
            return MediaImage(content=body, content_type=content_type)
    if body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        return MediaImage(content=body, content_type="image/webp")
    raise MediaServerProtocolError(f"the server sent no image for {what}")

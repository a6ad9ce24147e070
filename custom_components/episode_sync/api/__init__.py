"""Async clients for Plex and Jellyfin, free of Home Assistant imports.

The package could be published on its own: every client takes an injected
``aiohttp.ClientSession`` and speaks only in the models of ``models.py`` and the
errors of ``errors.py``.
"""

"""Faithful Plex and Jellyfin simulators for the tests, script/develop and script/bench."""

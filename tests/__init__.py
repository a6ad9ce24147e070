"""Tests of the Episode Sync integration."""

"""Connectors: Plex, Jellyfin and Emby servers bridged to watchledger (``connectors.md``)."""

"""Fake Plex, Jellyfin and Emby servers: the endpoints a connector uses, faithful to each
server's published API (each module names the document it was checked against), with every
quirk of ``connectors.md`` switchable. Media servers cannot run where watchledger is tested,
so the connector tests and ``watchledger bench connectors`` run against these."""

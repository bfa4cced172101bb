"""Operators' tools: the ``watchledger`` command line (:mod:`.cli`), what an event import
checks and restores (:mod:`.exchange`), and benchmarks (:mod:`.bench`)."""

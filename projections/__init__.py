"""Projections: pure folds of the event log into tables, and the runner that applies them.

Filled in by the account API (issue 3); the package exists so the layout and the dependency
direction (services -> projections -> eventstore) hold from the start.
"""

"""The live report: what a merge running at the beamline shows while data arrive.

Modules (one job each): :mod:`~careless_online.report.halves` (half-dataset
merges of model-scaled observations), :mod:`~careless_online.report.shells`
(per-shell completeness, multiplicity, CC1/2 and CCanom),
:mod:`~careless_online.report.trend` (statistics against images merged, and
the stopping hint), :mod:`~careless_online.report.figures` (the panels),
:mod:`~careless_online.report.page` (``index.html``),
:mod:`~careless_online.report.files` (atomic writes) and
:mod:`~careless_online.report.live` (:class:`LiveReport`, which refreshes them
all under ``<out>_live/`` at a bounded cost).
"""

"""Merging statistics: CC1/2, CCanom, Rsplit, CCpred, completeness, signal, maps.

Modules (one job each): :mod:`~careless_online.stats.inputs` (reading and
checking files), :mod:`~careless_online.stats.correlation` (per-group Pearson
and Spearman), :mod:`~careless_online.stats.binning` (resolution shells and
shell tables), :mod:`~careless_online.stats.anomalous` (Friedel mates),
:mod:`~careless_online.stats.halves` (half-dataset statistics),
:mod:`~careless_online.stats.predictions` (CCpred),
:mod:`~careless_online.stats.reference` (CC to a reference or truth),
:mod:`~careless_online.stats.completeness`, :mod:`~careless_online.stats.signal`
(<I/SIGI>), :mod:`~careless_online.stats.history` (training histories),
:mod:`~careless_online.stats.maps` (anomalous difference maps) and
:mod:`~careless_online.stats.plots` (figures).
"""

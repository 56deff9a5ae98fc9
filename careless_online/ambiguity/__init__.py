"""Indexing ambiguity: candidate reindexing operators and the per-image choice of setting.

See docs/ambiguity.md.
"""

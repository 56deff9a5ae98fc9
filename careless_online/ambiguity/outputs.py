"""How the per-image choice of indexing setting appears in output files (no TensorFlow needed to read them)."""

#: Margin (standard deviations of Fisher's z) under which a choice is flagged ambiguous.
AMBIGUOUS_MARGIN = 3.0

#: Predictions-file columns of the choice, with their MTZ types (per image, repeated on its observations).
SETTING_COLUMNS = {"setting": "I", "setting_margin": "R", "setting_confidence": "R", "setting_ambiguous": "I"}

#: Prefix of the MTZ history line that names the operators of the ``setting`` column.
HISTORY_PREFIX = "careless_online reindexing operators:"


def history_line(operators):
    """The MTZ history line naming the operators (hkl triplets, by position) of the ``setting`` column."""
    return f"{HISTORY_PREFIX} " + ";".join(operators)


def operators_from_history(history):
    """The operators named in an MTZ history (list of str), or None."""
    for line in history:
        if line.startswith(HISTORY_PREFIX):
            return line[len(HISTORY_PREFIX):].strip().split(";")
    return None

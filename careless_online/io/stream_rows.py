"""Reflection rows of CrystFEL's fixed-width layout, many at once, without Python per line.

indexamajig writes every reflection as ``%4d %4d %4d %10.2f %10.2f %10.2f %10.2f %6.1f %6.1f panel``
(h, k, l, I, sigma(I), peak, background, fs/px, ss/px, panel name).  :func:`fixed_width_rows` reads
the first nine fields of many such lines with numpy: the lines are cut into a character matrix, each
field's characters are checked (spaces, an optional minus sign, digits and the decimal point where
the layout puts it) and its digits summed with their place values.

A field's value is its integer mantissa ``m`` (at most 10 digits, exact in float64) divided by
``10**d`` for ``d`` decimals: one correctly rounded division of two exact numbers, so the value is
the float64 nearest the decimal text, exactly what ``float(text)`` (and ``numpy.loadtxt``) gives.
Lines that do not follow the layout (a value wider than its field, a tab, an exponent, a blank line)
are reported as not valid; the caller reads them another way.
"""

import numpy as np

#: (width, decimals) of the nine numeric fields of a reflection line, separated by one space.
FIELDS = ((4, 0), (4, 0), (4, 0), (10, 2), (10, 2), (10, 2), (10, 2), (6, 1), (6, 1))
#: Characters of the nine fields and their separators.
PREFIX = sum(width for width, _ in FIELDS) + len(FIELDS) - 1
#: Bytes that may follow the nine fields: end of line, or whitespace before the panel name.
_AFTER = np.array([ord(c) for c in " \t\r\n"], dtype=np.uint8)


def _columns(text):
    """The first ``PREFIX + 1`` characters of each line, one row per character position.

    Returns
    -------
    columns : numpy.ndarray of uint8, shape (PREFIX + 1, n_lines)
        One row per character position (rows of contiguous arrays are fast to compare); where a
        line is shorter, the characters of the next lines (or padding).
    long_enough : numpy.ndarray of bool, shape (n_lines,)
    """
    buffer = np.frombuffer(text + b" " * (PREFIX + 1), dtype=np.uint8)
    ends = np.flatnonzero(buffer == ord("\n"))
    starts = np.empty_like(ends)
    starts[:1] = 0
    starts[1:] = ends[:-1] + 1
    windows = np.lib.stride_tricks.sliding_window_view(buffer, PREFIX + 1)
    return np.ascontiguousarray(windows[starts].T), ends - starts >= PREFIX


def _field(columns, decimals):
    """Values of one fixed-width field of every line, and whether each is a plain decimal number.

    Leading spaces, then an optional minus sign, then digits, with a decimal point at its place
    when ``decimals`` > 0 (a digit before it and ``decimals`` digits after it).

    Parameters
    ----------
    columns : numpy.ndarray of uint8, shape (width, n)
        The field's characters, one row per position.
    decimals : int
    """
    point = len(columns) - decimals - 1 if decimals else None
    n = len(columns[0])
    valid, leading, negative = np.ones(n, dtype=bool), np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
    mantissa = np.zeros(n)
    for position, chars in enumerate(columns):
        if position == point:
            valid &= (chars == ord(".")) & digit
            leading[:] = False
            continue
        digit = (chars - np.uint8(ord("0"))) < 10  # uint8 arithmetic wraps the other bytes above 9
        space = chars == ord(" ")
        minus = (chars == ord("-")) & leading
        valid &= digit | minus | (space & leading)
        negative |= minus
        leading &= space
        mantissa = mantissa * 10.0 + np.where(digit, chars - np.uint8(ord("0")), 0)
    valid &= digit
    value = mantissa / 10.0 ** decimals if decimals else mantissa
    return np.where(negative, -value, value), valid


def fixed_width_rows(text):
    """The nine numbers of every line of ``text`` in CrystFEL's reflection layout.

    Parameters
    ----------
    text : bytes
        Reflection lines, each ending with ``\\n`` (ASCII).

    Returns
    -------
    values : numpy.ndarray of float64, shape (n_lines, 9)
        h, k, l, I, sigma, peak, background, fs, ss (meaningless where not valid).
    valid : numpy.ndarray of bool, shape (n_lines,)
        Lines whose first nine fields follow the layout exactly, followed by the end of the line
        or whitespace; their values equal ``float`` of each field's text.
    """
    columns, valid = _columns(text)
    values = np.empty((len(FIELDS), len(valid)))
    start = 0
    for number, (width, decimals) in enumerate(FIELDS):
        values[number], field_valid = _field(columns[start:start + width], decimals)
        after = columns[start + width]
        valid &= field_valid & (np.isin(after, _AFTER) if number == len(FIELDS) - 1 else after == ord(" "))
        start += width + 1
    return values.T, valid

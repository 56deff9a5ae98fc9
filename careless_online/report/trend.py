r"""Statistics against images merged, and the stopping hint drawn from them.

Every report adds a point (images merged, CC1/2 and CCanom of each shell, peak
heights).  The *gain* of a shell is the slope of a least-squares line through
the points of the most recent half of the data (images merged at least half
the current number), expressed per 1,000 images:

.. math::

    g = 1000 \, \frac{\sum_j (n_j - \bar n)(c_j - \bar c)}{\sum_j (n_j - \bar n)^2}.

The outer shell has *stopped improving* when its CC1/2 gain is below
:data:`STALL_GAIN`.  The resolution at which CC1/2 crosses
:data:`CC_THRESHOLD` is interpolated linearly in :math:`1/d^2` between the
centres of the last shell above and the first shell below it.
"""

import numpy as np

#: CC1/2 gain per 1,000 images below which a shell counts as no longer improving.
STALL_GAIN = 0.01
#: The CC1/2 at which the useful resolution is read off.
CC_THRESHOLD = 0.3
#: Fewest points (reports) over which a gain is estimated.
MIN_POINTS = 3


def gain_per_1000(images, values):
    """Slope of ``values`` against ``images`` over the recent half of the data, per 1,000 images.

    Parameters
    ----------
    images : array-like of float, shape (n,)
        Images merged at each point (non-decreasing).
    values : array-like of float, shape (n,)

    Returns
    -------
    float
        NaN with fewer than :data:`MIN_POINTS` finite points in the window or
        when the images merged did not change in it.
    """
    images, values = np.asarray(images, dtype=float), np.asarray(values, dtype=float)
    if len(images) == 0:
        return float("nan")
    window = (images >= 0.5 * images[-1]) & np.isfinite(values)
    x, y = images[window], values[window]
    if len(x) < MIN_POINTS or np.ptp(x) == 0:
        return float("nan")
    x_centred = x - x.mean()
    return float(1000.0 * np.sum(x_centred * (y - y.mean())) / np.sum(x_centred**2))


def crossing_resolution(shells, key="cchalf", threshold=CC_THRESHOLD):
    """Resolution (Å) at which a per-shell statistic falls through ``threshold``.

    Parameters
    ----------
    shells : list of dict
        Shell records, lowest resolution first (``d_max``, ``d_min``, ``key``).
    key : str
    threshold : float

    Returns
    -------
    float or None
        The interpolated resolution; the last shell's ``d_min`` when every
        shell is above the threshold; None when the first shell is already
        below it (or has no value).
    """
    values = [s[key] for s in shells]
    centres = [0.5 * (s["d_max"] ** -2 + s["d_min"] ** -2) for s in shells]
    if not values or not np.isfinite(values[0]) or values[0] < threshold:
        return None
    for i in range(1, len(values)):
        if not np.isfinite(values[i]) or values[i] < threshold:
            if not np.isfinite(values[i]):
                return float(shells[i - 1]["d_min"])
            fraction = (values[i - 1] - threshold) / (values[i - 1] - values[i])
            s2 = centres[i - 1] + fraction * (centres[i] - centres[i - 1])
            return float(s2 ** -0.5)
    return float(shells[-1]["d_min"])


class Trend:
    """Points of the live report over the run (one per report)."""

    def __init__(self):
        self.points = []

    def add(self, images, shells, peaks=None, overall=None):
        """Record one report: images merged, the shell records, peak heights by atom, overall record."""
        keys = ("completeness", "multiplicity", "cchalf", "ccanom")
        self.points.append({"images": int(images),
                            "cchalf": [s["cchalf"] for s in shells],
                            "ccanom": [s["ccanom"] for s in shells],
                            "peaks": dict(peaks or {}),
                            "overall": {k: overall[k] for k in keys} if overall else {}})

    def overall_series(self, key):
        """(images, values) of an overall statistic over the reports that recorded it."""
        points = [p for p in self.points if key in p["overall"]]
        return (np.array([p["images"] for p in points], dtype=float),
                np.array([p["overall"][key] for p in points], dtype=float))

    def series(self, key, shell):
        """(images, values) of a statistic of one shell over the run."""
        images = np.array([p["images"] for p in self.points], dtype=float)
        values = np.array([p[key][shell] for p in self.points], dtype=float)
        return images, values

    def peak_series(self):
        """{atom: (images, heights)} over the reports that computed peaks."""
        atoms = {}
        for point in self.points:
            for atom, height in point["peaks"].items():
                atoms.setdefault(atom, ([], []))
                atoms[atom][0].append(point["images"])
                atoms[atom][1].append(height)
        return {atom: (np.array(x, dtype=float), np.array(y, dtype=float)) for atom, (x, y) in atoms.items()}

    def gains(self, key, n_shells):
        """Gain per 1,000 images of each shell (see :func:`gain_per_1000`)."""
        return [gain_per_1000(*self.series(key, s)) for s in range(n_shells)]


def stopping_hint(trend, shells):
    """The numbers a team uses to decide whether to keep collecting.

    Parameters
    ----------
    trend : Trend
    shells : list of dict
        The current shell records.

    Returns
    -------
    dict
        ``outer_cchalf``, ``outer_gain_per_1000`` (CC1/2 of the outer shell
        and its gain), ``outer_stopped`` (bool, or None while the gain is
        unknown), ``ccanom_gain_per_1000`` (per shell), ``d_cchalf_0.3``
        (Å, or None) and ``text``: the hint in words.
    """
    n = len(shells)
    gains = trend.gains("cchalf", n)
    outer_gain = gains[-1] if gains else float("nan")
    stopped = None if not np.isfinite(outer_gain) else bool(outer_gain < STALL_GAIN)
    d_cross = crossing_resolution(shells)
    outer = shells[-1]
    words = [f"Outer shell ({outer['d_max']:.2f}-{outer['d_min']:.2f} Å): CC1/2 {_number(outer['cchalf'])}"]
    if stopped is None:
        words.append("too few reports yet to tell whether more data help")
    elif stopped:
        words.append(f"has stopped improving: more data adds {outer_gain:+.3f} per 1,000 images")
    else:
        words.append(f"still improving: more data adds {outer_gain:+.3f} per 1,000 images")
    if d_cross is None:
        words.append(f"CC1/2 is below {CC_THRESHOLD} in every shell")
    elif np.isfinite(outer["cchalf"]) and outer["cchalf"] >= CC_THRESHOLD:
        words.append(f"CC1/2 stays above {CC_THRESHOLD} out to the resolution limit ({d_cross:.2f} Å)")
    else:
        words.append(f"CC1/2 crosses {CC_THRESHOLD} at {d_cross:.2f} Å now")
    return {"outer_cchalf": outer["cchalf"], "outer_gain_per_1000": outer_gain, "outer_stopped": stopped,
            "cchalf_gain_per_1000": gains, "ccanom_gain_per_1000": trend.gains("ccanom", n),
            "d_cchalf_0.3": d_cross, "text": "; ".join(words) + "."}


def _number(value):
    return f"{value:.3f}" if np.isfinite(value) else "n/a"

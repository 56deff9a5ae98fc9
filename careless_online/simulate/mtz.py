"""Write simulated observations, truth and per-image truth to MTZ and CSV files."""

from careless_online.simulate.images import OBSERVABLE_COLUMNS


def write_unmerged_mtz(observations, path, truth_columns=False):
    """Write observations as an unmerged MTZ.

    Parameters
    ----------
    observations : rs.DataSet
        Unmerged, indexed by the original (not ASU-mapped) H, K, L.
    path : str
    truth_columns : bool
        Also write the simulator's truth columns (PARTIALITY, SCALE, FTRUE,
        ...); by default only what data processing would give: BATCH (1-based
        image number), I, SIGI, XDET, YDET, ewald_offset, s1x, s1y, s1z.

    Returns
    -------
    str
        ``path``.
    """
    ds = observations if truth_columns else observations[OBSERVABLE_COLUMNS].copy()
    ds.write_mtz(str(path))
    return str(path)


def write_truth_mtz(truth, path):
    """Write the merged truth (F, PHI, F(+), PHI(+), F(-), PHI(-), DANO) as MTZ."""
    truth.write_mtz(str(path))
    return str(path)


def write_images_csv(images, path):
    """Write the per-image truth table (one row per image) as CSV."""
    images.to_csv(str(path), index=False, float_format="%.8g")
    return str(path)

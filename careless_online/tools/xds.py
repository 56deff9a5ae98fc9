"""Read XDS_ASCII.HKL files (unmerged reflections from XDS CORRECT) into a DataSet.

The header names the data columns (``!ITEM_H=1`` ...), the space group
(``!SPACE_GROUP_NUMBER=``), the cell (``!UNIT_CELL_CONSTANTS=``) and the
wavelength (``!X-RAY_WAVELENGTH=``).  Columns get careless.xds2mtz's names:
``I, SIGI`` for ``IOBS, SIGMA(IOBS)``, ``XDET, YDET, ZDET`` for ``XD, YD, ZD``;
``BATCH`` is the image number ``ZD`` rounded.  XDS flags rejected
observations with a negative sigma: they are dropped.
"""

import io
import re

import gemmi
import numpy as np
import pandas as pd
import reciprocalspaceship as rs

from careless_online.errors import InputError
from careless_online.io.table import parse_spacegroup

#: careless.xds2mtz's names of the XDS items.
RENAMED = {"IOBS": "I", "SIGMA(IOBS)": "SIGI", "XD": "XDET", "YD": "YDET", "ZD": "ZDET"}

#: MTZ types of the columns (others: R).
TYPES = {"H": "H", "K": "H", "L": "H", "I": "J", "SIGI": "Q", "BATCH": "B"}

_ITEM = re.compile(r"!ITEM_(\S+?)=\s*(\d+)")


def parse_header(lines, path):
    """Items (column names in order), space group, cell and wavelength of an XDS_ASCII header.

    Raises
    ------
    InputError
        When the file does not look like XDS_ASCII (no items, no space group or cell).
    """
    items, spacegroup, cell, wavelength = {}, None, None, None
    for line in lines:
        for name, position in _ITEM.findall(line):
            items[int(position)] = name
        if line.startswith("!SPACE_GROUP_NUMBER="):
            spacegroup = line.split("=", 1)[1].split()[0]
        elif line.startswith("!UNIT_CELL_CONSTANTS="):
            cell = [float(v) for v in line.split("=", 1)[1].split()[:6]]
        elif line.startswith("!X-RAY_WAVELENGTH="):
            wavelength = float(line.split("=", 1)[1].split()[0])
    missing = [what for what, value in (("!ITEM_ lines", items), ("!SPACE_GROUP_NUMBER", spacegroup),
                                        ("!UNIT_CELL_CONSTANTS", cell)) if not value]
    if missing:
        raise InputError(f"not an XDS_ASCII.HKL file: no {', '.join(missing)} in the header", path)
    names = [items[i] for i in sorted(items)]
    needed = [n for n in ("H", "K", "L", "IOBS", "SIGMA(IOBS)", "ZD") if n not in names]
    if needed:
        raise InputError(f"XDS_ASCII.HKL without item(s) {', '.join(needed)}", path)
    return names, spacegroup, cell, wavelength


def read_xds_ascii(path, spacegroup=None, cell=None):
    """Unmerged reflections of an XDS_ASCII.HKL file.

    Parameters
    ----------
    path : str
    spacegroup : str, optional
        Override of the file's space group (number or name).
    cell : sequence of 6 float, optional
        Override of the file's cell.

    Returns
    -------
    (reciprocalspaceship.DataSet, float or None, int)
        Indexed by H, K, L; the wavelength (Å) and the number of rejected
        observations dropped.
    """
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except IsADirectoryError:
        raise InputError("is a folder, not an XDS_ASCII.HKL file", path) from None
    lines = text.splitlines()
    names, file_group, file_cell, wavelength = parse_header([l for l in lines if l.startswith("!")], path)
    body = "\n".join(l for l in lines if l.strip() and not l.lstrip().startswith("!"))
    try:
        table = pd.read_csv(io.StringIO(body), sep=r"\s+", header=None, names=names, dtype=np.float64)
    except (ValueError, pd.errors.ParserError) as err:
        raise InputError(f"unreadable reflection lines ({str(err).splitlines()[0]})", path) from None
    group = parse_spacegroup(spacegroup or file_group, path)
    rejected = table["SIGMA(IOBS)"].to_numpy() <= 0
    table = table[~rejected].rename(columns=RENAMED)
    table["BATCH"] = np.round(table["ZDET"].to_numpy())
    ds = rs.DataSet(table.reset_index(drop=True), cell=gemmi.UnitCell(*(cell or file_cell)), spacegroup=group,
                    merged=False)
    ds = ds.astype({c: TYPES.get(c, "R") for c in ds.columns})
    return ds.set_index(["H", "K", "L"]), wavelength, int(rejected.sum())

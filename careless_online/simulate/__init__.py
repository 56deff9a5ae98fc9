"""Simulated serial-crystallography (XFEL still-image) data with known truth.

Model
-----
Crystal.  Atoms j (random C/N/O plus ``n_anomalous`` atoms of an anomalous
element per asymmetric unit, or several elements by ``anomalous_atoms``, or a
coordinate file), expanded to the unit cell by the space group's operations;
random atoms are uniform in the cell or, with ``molecule_radius``, gathered
into one Gaussian molecule per asymmetric unit.  For every h of the
reciprocal ASU and -h:

    F(h) = Σ_j occ_j (f0_j(s) + f'_j + i f''_j) exp(-B_j s²/4) exp(2πi h·x_j)
           - k_sol exp(-B_sol s²/4) F_N(h)                 (Babinet bulk solvent)

with s = 1/d, f0 from the IT92 coefficients, f' and f'' given or from
Cromer-Liberman at the wavelength, F_N the sum without f'' and k_sol =
``bulk_solvent`` (0: no solvent).  f'' ≠ 0 breaks Friedel's law for
acentric reflections (|F(h)| ≠ |F(-h)|); centric ones keep it.

Image i.  Uniform random orientation U_i; cell lengths jittered (relative rms
``cell_jitter``, crystal-system constraints kept) giving the reciprocal basis
B_i (columns a*, b*, c*).  Beam along +z, s0 = (0, 0, 1/λ):

    q = U_i B_i h,   s1 = s0 + q,   e = |s1| - 1/λ          (Ewald offset)

With ``energy_jitter`` > 0 each shot has its own mean wavelength λ_i = λ (1 +
energy_jitter · N(0, 1)): e and p use λ_i, while the stream and the
``ewald_offset`` column record the offset for the nominal λ.
    σ(q)² = r² + (η|q|)² + (δλ/λ · λ|q|²/2)²               (profile width)
    p = exp(-e²/(2σ²))                                      (partiality, ≤ 1)
    p = σ_ref/σ · exp(-e²/(2σ²))                            (with ``lorentz``)

η is the mosaicity, per image lognormal about it with ``mosaicity_spread``;
σ_ref the median nominal width of all reflections.

A reflection is recorded when p ≥ ``partiality_min``, d ≥ dmin and s1 hits
the flat detector at distance D (XDET = nx/2 + D s1x/s1z / pixel, same for y).
With image scale K_i = exp(N(-σ_K²/2, σ_K)), image B-factor B_i ~ N(0, σ_B),
polarization factor P = 1 - f u_x² - (1-f) u_y² (u = s1/|s1|):

    S = mean_counts · K_i · |F(h)|²/<|F|²> · exp(-B_i s²/2) · p · P
    C ~ Poisson(S·ε + bg),   b = Poisson(r·bg)/r
    I = C - b,   SIGI = sqrt(max(C + b/r, 1) + (f·I)²)

with f = ``sigma_fraction`` and ε = exp(e·N(0, 1) - e²/2) for ``model_error``
e > 0 (else 1): an error SIGI does not describe.

Images recording fewer than ``min_reflections`` are redrawn.  Image i draws
from its own generator seeded with (seed, i).

Outputs: a CrystFEL stream (reads with ``rs.read_crystfel``), an unmerged MTZ,
DIALS stills pairs (:mod:`careless_online.simulate.dials`), the truth ``<base>_truth.mtz`` and ``<base>_images.csv``.
"""

from careless_online.simulate.api import (
    FORMATS,
    Crystal,
    SimulatedData,
    make_crystal,
    simulate,
    simulate_to_files,
    write,
)
from careless_online.simulate.config import SimulationConfig

__all__ = [
    "FORMATS",
    "Crystal",
    "SimulatedData",
    "SimulationConfig",
    "make_crystal",
    "simulate",
    "simulate_to_files",
    "write",
]

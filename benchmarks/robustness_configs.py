"""The configurations of the robustness matrix: simulated crystals that differ in what matters.

Each configuration is a set of ``careless_online.simulate`` options (see
docs/simulator.md): cell size (30-150 Å edges, so the number and strength of
the low-resolution reflections), Babinet bulk solvent on or off, compact
molecules giving a few very strong low-order reflections, the anomalous
scatterers (Se, Zn, Ca, S; f'' 0.4-4 e), photons per reflection (5-200) and
background, per-image scale and B spread, mosaicity, its spread between images
and the Lorentz-like partiality, fractional sigma and multiplicative model
error, and the detector distance.  ``thermolysin`` mimics the held-out data of
issue 20.
"""

from dataclasses import dataclass

from datasets import Dataset

#: Options every configuration shares unless it says otherwise (the simulator's defaults besides).
COMMON = ("--energy-jitter", "0.002")


@dataclass(frozen=True)
class MatrixConfig:
    """One configuration of the matrix.

    Parameters
    ----------
    name : str
    about : str
        What it varies, in a few words.
    spacegroup : str
    cell : tuple of 6 float
    dmin : float
        Resolution limit of the data and the merges (Å).
    elements : str
        Comma-separated anomalous scatterers (their peaks are measured).
    options : tuple of str
        Further simulator options.
    """

    name: str
    about: str
    spacegroup: str
    cell: tuple
    dmin: float
    elements: str
    options: tuple = ()

    def simulator_options(self):
        """Every simulator option of this configuration (besides images, seed and formats)."""
        return ("--cell", *map(str, self.cell), "--spacegroup", self.spacegroup, "--dmin", str(self.dmin),
                *COMMON, *self.options)

    def dataset(self, n_images, seed=2024):
        """The benchmark :class:`~datasets.Dataset` of this configuration with ``n_images`` images."""
        return Dataset(f"robust_{self.name}_{n_images}", n_images, seed=seed, options=self.simulator_options(),
                       spacegroup=self.spacegroup, dmin=self.dmin)


LYSOZYME = (79.1, 79.1, 38.0, 90.0, 90.0, 90.0)

#: The matrix, in the order of its table.
CONFIGS = {c.name: c for c in [
    MatrixConfig("lysozyme_se", "the project's own benchmark: uniform atoms, no solvent, 4 Se",
                 "P 43 21 2", LYSOZYME, 2.0, "Se", ("--mosaicity", "0.27")),
    MatrixConfig("thermolysin", "held-out-like: Zn + 4 Ca + 8 S at 1.27 A, molecule, bulk solvent, Lorentz, "
                 "mosaicity spread, 3 % fractional sigma",
                 "P 61 22", (93.0, 93.0, 131.0, 90.0, 90.0, 120.0), 2.0, "Zn,Ca,S",
                 ("--wavelength", "1.27", "--n-atoms", "2200", "--anomalous-atoms", "Zn:1,Ca:4,S:8",
                  "--molecule-radius", "16", "--bulk-solvent", "0.8", "--lorentz", "--mosaicity", "0.1",
                  "--mosaicity-spread", "0.3", "--sigma-fraction", "0.03", "--energy-jitter", "0")),
    MatrixConfig("small_s", "small P 21 21 21 cell (32-56 A), S-SAD (f'' 0.5), molecule + solvent, 50 photons",
                 "P 21 21 21", (32.0, 44.0, 56.0, 90.0, 90.0, 90.0), 1.8, "S",
                 ("--wavelength", "1.5", "--n-atoms", "500", "--anomalous-atoms", "S:6", "--molecule-radius", "11",
                  "--bulk-solvent", "0.75", "--mosaicity", "0.3", "--mean-counts", "50")),
    MatrixConfig("large_se", "large cell (90-150 A) to 3 A, 8 Se, bulk solvent, narrow mosaicity",
                 "P 21 21 21", (90.0, 110.0, 150.0, 90.0, 90.0, 90.0), 3.0, "Se",
                 ("--n-atoms", "4000", "--n-anomalous", "8", "--bulk-solvent", "0.75", "--mosaicity", "0.1")),
    MatrixConfig("strong_ca", "very strong low-order reflections (molecule + solvent), 200 photons, "
                 "background 2, 4 Ca at 1.54 A",
                 "P 43 21 2", LYSOZYME, 2.0, "Ca",
                 ("--wavelength", "1.54", "--anomalous-atoms", "Ca:4", "--molecule-radius", "12",
                  "--bulk-solvent", "0.8", "--mosaicity", "0.27", "--mean-counts", "200", "--background", "2")),
    MatrixConfig("weak_zn", "5 photons per reflection over a background of 50, 2 Zn at 1.27 A, scale sd 0.3",
                 "P 43 21 2", LYSOZYME, 2.0, "Zn",
                 ("--wavelength", "1.27", "--anomalous-atoms", "Zn:2", "--mosaicity", "0.27", "--mean-counts", "5",
                  "--background", "50", "--scale-spread", "0.3")),
    MatrixConfig("scale_spread", "image scale log-sd 1.0 and image B sd 15 A^2, 50 photons, 4 Se",
                 "P 43 21 2", LYSOZYME, 2.0, "Se",
                 ("--mosaicity", "0.27", "--scale-spread", "1.0", "--image-b-sd", "15", "--mean-counts", "50")),
    MatrixConfig("mosaic_lorentz", "wide mosaicity 0.4 deg with spread 0.6 between images, Lorentz-like "
                 "partiality, bandwidth 0.5 %, scale sd 0.2",
                 "P 43 21 2", LYSOZYME, 2.0, "Se",
                 ("--mosaicity", "0.4", "--mosaicity-spread", "0.6", "--lorentz", "--bandwidth", "0.005",
                  "--scale-spread", "0.2")),
    MatrixConfig("error_model", "5 % fractional sigma and 15 % multiplicative model error, bulk solvent, "
                 "2 Se with f'' 2",
                 "P 43 21 2", LYSOZYME, 2.0, "Se",
                 ("--anomalous-atoms", "Se:2:2.0", "--bulk-solvent", "0.75", "--mosaicity", "0.27",
                  "--sigma-fraction", "0.05", "--model-error", "0.15")),
    MatrixConfig("detector_far", "detector at 200 mm: the 2.0-2.1 A reflections reach only its corners",
                 "P 43 21 2", LYSOZYME, 2.0, "Se",
                 ("--mosaicity", "0.27", "--detector-distance", "200")),
    MatrixConfig("hexagonal_narrow", "P 61 22 (60-100 A), narrow mosaicity 0.05 deg, Lorentz, molecule + "
                 "solvent (B_sol 100), 2 Se",
                 "P 61 22", (60.0, 60.0, 100.0, 90.0, 90.0, 120.0), 2.2, "Se",
                 ("--n-atoms", "700", "--n-anomalous", "2", "--molecule-radius", "12", "--bulk-solvent", "0.8",
                  "--bulk-solvent-b", "100", "--mosaicity", "0.05", "--lorentz")),
]}


def select(names=None):
    """The configurations named (comma-separated string or list; None: all), in matrix order."""
    if names is None:
        return list(CONFIGS.values())
    wanted = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    unknown = [n for n in wanted if n not in CONFIGS]
    if unknown:
        raise KeyError(f"unknown configuration(s) {', '.join(unknown)}; known: {', '.join(CONFIGS)}")
    return [CONFIGS[n] for n in wanted]

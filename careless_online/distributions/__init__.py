"""Prior and surrogate posterior distributions of the careless_online model."""

from careless_online.distributions.structure_factors import StructureFactorPosterior
from careless_online.distributions.wilson import WilsonPrior

__all__ = ["StructureFactorPosterior", "WilsonPrior"]

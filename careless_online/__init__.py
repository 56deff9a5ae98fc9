"""careless_online: online variational merging of serial crystallography data."""

__version__ = "0.1.0"

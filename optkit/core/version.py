"""optkit's version, recorded in every artifact's manifest (kept equal to pyproject.toml's)."""

__version__ = "0.1.0"

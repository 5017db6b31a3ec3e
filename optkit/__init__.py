"""optkit: a compiler-style optimization toolkit for mobile vision models."""

__version__ = "0.1.0"

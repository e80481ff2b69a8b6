"""Data sets: synthetic 2-D sets and MNIST (IDX files, verified download, bundled sample)."""

from .inputs import read_inputs
from .mnist import mnist
from .synthetic import circles, moons, spirals

__all__ = ["mnist", "moons", "circles", "spirals", "read_inputs"]

"""Data-parallel training over MPI (placeholder; filled in below)."""

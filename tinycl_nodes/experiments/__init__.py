"""Experiments that reproduce (and try to beat) the reference papers on real data."""

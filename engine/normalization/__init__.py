"""Relative radiometric normalization of overlapping scenes."""

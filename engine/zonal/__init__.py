"""Zonal statistics over polygon layers."""

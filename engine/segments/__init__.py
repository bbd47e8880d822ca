"""Per-segment statistics, spatial statistics and user functions."""

"""The statistic catalogue and the numba kernels that compute it."""

"""Reading and writing: rasters, vector layers, store addresses, output safety."""

"""HTML reports with figures, for QGIS's Results Viewer."""

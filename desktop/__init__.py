"""The plugin's desktop side (QGIS GUI only): installing missing Python packages and
preparing the engine on the first start, with the message bar, a menu and background
tasks. Nothing here runs in qgis_process or in the tests' headless provider."""

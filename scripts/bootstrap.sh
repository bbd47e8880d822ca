#!/bin/sh
# Install what `make test` and `make demo` need, skipping what is already there:
# Debian's QGIS/GDAL packages (as root, else the command is printed) and a venv
# `.venv` on top of them with the pinned Python packages (requirements-dev.txt, which
# takes the exact versions of requirements-lock.txt).
set -e
cd "$(dirname "$0")/.."

PACKAGES="qgis python3-qgis python3-gdal python3-rasterio python3-venv xvfb python3-scipy"
missing=""
for package in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $package"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "Installing Debian packages:$missing"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
    else
        echo "Tessera needs these Debian packages:$missing" >&2
        echo "Install them with:" >&2
        echo "    sudo apt-get update && sudo apt-get install -y$missing" >&2
        exit 1
    fi
fi

if [ ! -x .venv/bin/python ]; then
    echo "Creating .venv (with Debian's site packages)"
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/requirements.installed
requirements="requirements.txt requirements-lock.txt requirements-dev.txt"
if [ ! -f "$stamp" ] || ! cat $requirements | cmp -s - "$stamp"; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
    cat $requirements > "$stamp"
fi

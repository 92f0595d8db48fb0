#!/usr/bin/env bash
# build-web.sh - install the pages' libraries (web/package-lock.json) from the npm
# registry and copy the files the pages load, with their licences, into
# dispatch/web/vendor/, which the app serves at /static/vendor. Installs Node.js
# and npm as root when they are missing (Debian/Ubuntu). Called by `make install`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v npm >/dev/null; then
    if [[ $EUID -eq 0 ]]; then as_root=(); elif sudo -n true 2>/dev/null; then as_root=(sudo -n); else
        echo "build-web: run 'sudo apt-get install nodejs npm' (the pages' libraries come from npm)" >&2
        exit 1
    fi
    echo "build-web: installing nodejs and npm"
    export DEBIAN_FRONTEND=noninteractive
    "${as_root[@]}" apt-get update -qq >/dev/null
    "${as_root[@]}" apt-get install -y -qq nodejs npm >/dev/null
fi

(cd web && npm ci --no-audit --no-fund --loglevel=error)

modules=web/node_modules
vendor=dispatch/web/vendor
rm -rf "$vendor.new"
mkdir -p "$vendor.new"
# package: files the pages load (paths inside the package)
copy() {
    local package=$1; shift
    mkdir -p "$vendor.new/$package"
    for file in "$@"; do cp -r "$modules/$package/$file" "$vendor.new/$package/"; done
    cp "$modules/$package"/*LICEN[CS]E* "$vendor.new/$package/"
    cp "$modules/$package"/NOTICE* "$vendor.new/$package/" 2>/dev/null || true
}
copy leaflet dist/leaflet.js dist/leaflet.css dist/images
copy leaflet.markercluster dist/leaflet.markercluster.js dist/MarkerCluster.css dist/MarkerCluster.Default.css
copy echarts dist/echarts.min.js
copy idb build/umd.js
rm -rf "$vendor"
mv "$vendor.new" "$vendor"
echo "build-web: $(find "$vendor" -type f | wc -l) files in $vendor"

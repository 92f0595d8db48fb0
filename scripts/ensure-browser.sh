#!/usr/bin/env bash
# ensure-browser.sh - the browser tests need Debian's Chromium and a CJK font
# (Playwright's own browser download does not work offline; without a CJK font
# every Chinese character in a screenshot is an empty box). Checks first, installs
# as root (or with passwordless sudo) only when something is missing; otherwise
# says in one sentence what to install and exits 1. Called by `make test`.
set -euo pipefail

missing=()
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
fc-list 2>/dev/null | grep -qi 'WenQuanYi Micro Hei' || missing+=(fonts-wqy-microhei)
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $EUID -eq 0 ]]; then as_root=(); elif sudo -n true 2>/dev/null; then as_root=(sudo -n); else
    echo "ensure-browser: run 'sudo apt-get install ${missing[*]}' (needed by the browser tests)" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null; then
    echo "ensure-browser: install ${missing[*]} with your package manager (needed by the browser tests)" >&2
    exit 1
fi
echo "ensure-browser: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! "${as_root[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1; then
    "${as_root[@]}" apt-get update -qq >/dev/null
    "${as_root[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null \
        || { echo "ensure-browser: 'apt-get install ${missing[*]}' failed; install them by hand" >&2; exit 1; }
fi

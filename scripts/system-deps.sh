#!/usr/bin/env bash
# The system packages ferrule's sandbox uses: bubblewrap (bwrap) and
# libseccomp. Installed with the system's package manager when this runs as
# root; otherwise it says what to install, and the sandbox tests skip saying
# why.
set -euo pipefail
missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
if ! ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2'; then
    missing+=(libseccomp)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "ferrule: not installed: ${missing[*]} (the sandbox needs them); install them as root" >&2
    exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
    pkgs=("${missing[@]/libseccomp/libseccomp2}")
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
elif command -v dnf >/dev/null 2>&1; then
    dnf install -y -q "${missing[@]}"
elif command -v apk >/dev/null 2>&1; then
    apk add -q "${missing[@]}"
else
    echo "ferrule: no known package manager: install ${missing[*]} by hand" >&2
fi

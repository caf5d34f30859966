#!/usr/bin/env bash
# Build KenLM's `lmplz` (trains ARPA models) and `build_binary` (ARPA -> mmap binary) into
# the directory given as $1 (default: $KENLM_BIN, else ~/.cache/rawtext/kenlm/bin).
#
# The kenlm wheel on PyPI only ships the query side (kenlm.Model); the estimation tools
# live in the same sdist under lm/builder, so we build them from exactly the version the
# Python package pins (one source of truth for the file format). Idempotent: does nothing
# when both binaries already exist. About 3 minutes on 2 cores.
set -euo pipefail

KENLM_VERSION=0.3.0
DEST=${1:-${KENLM_BIN:-$HOME/.cache/rawtext/kenlm/bin}}
PYTHON=${PYTHON:-$(dirname "$0")/../.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3

if [ -x "$DEST/lmplz" ] && [ -x "$DEST/build_binary" ]; then
    echo "kenlm: lmplz and build_binary already in $DEST"
    exit 0
fi

# kenlm's CMakeLists asks for Boost's unit_test_framework even with tests off: hence
# libboost-test-dev.
APT_PACKAGES="build-essential cmake libboost-program-options-dev libboost-system-dev \
libboost-thread-dev libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev"

missing_packages() {
    local pkg missing=()
    for pkg in $APT_PACKAGES; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    echo "${missing[@]:-}"
}

if ! command -v dpkg-query >/dev/null; then
    echo "kenlm: not a Debian system; make sure a C++ compiler, cmake, Boost" \
         "(program_options, system, thread), zlib, bzip2 and xz/lzma headers are installed." >&2
else
    MISSING=$(missing_packages)
    if [ -n "$MISSING" ]; then
        if [ "$(id -u)" -eq 0 ]; then
            echo "kenlm: installing build dependencies: $MISSING"
            apt-get update -qq
            # shellcheck disable=SC2086  # word splitting wanted: one argument per package
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $MISSING
        else
            echo "kenlm: missing build dependencies. Install them, then re-run 'make setup':" >&2
            echo "    sudo apt-get install -y $MISSING" >&2
            exit 1
        fi
    fi
fi

WORK=$(mktemp -d /tmp/kenlm-build.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

echo "kenlm: fetching the kenlm==$KENLM_VERSION source distribution"
"$PYTHON" -m pip download -q --no-deps --no-binary kenlm "kenlm==$KENLM_VERSION" -d "$WORK"
tar -xzf "$WORK"/kenlm-"$KENLM_VERSION".tar.gz -C "$WORK"
SRC="$WORK/kenlm-$KENLM_VERSION"

echo "kenlm: building lmplz and build_binary (a few minutes)"
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DCOMPILE_TESTS=OFF >"$WORK/cmake.log" \
    || { cat "$WORK/cmake.log" >&2; exit 1; }
cmake --build "$WORK/build" --target lmplz build_binary -j "${JOBS:-2}"

mkdir -p "$DEST"
install -m 755 "$WORK/build/bin/lmplz" "$WORK/build/bin/build_binary" "$DEST/"
echo "kenlm: installed lmplz and build_binary in $DEST"

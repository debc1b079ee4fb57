#!/usr/bin/env bash
# Installs ChatVLMLLM on Debian/Ubuntu into .venv, with the system packages it needs.
#   scripts/install.sh          what the app needs: Tesseract (eng+rus), fonts, Python venv
#   scripts/install.sh --test   also what the test suite needs: Chromium for the browser tests
# Safe to run again; apt steps use sudo when not run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

TEST=0
[ "${1:-}" = "--test" ] && TEST=1
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

RUNTIME_APT=(tesseract-ocr tesseract-ocr-eng tesseract-ocr-rus fonts-dejavu-core python3-venv python3-pip)
TEST_APT=(chromium fonts-noto-color-emoji)

phase() {  # phase NAME COMMAND...: run it and say how long it took
    local name=$1 start=$SECONDS
    shift
    echo "==> $name"
    "$@"
    echo "==> $name took $((SECONDS - start)) s"
}

apt_install() {
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

python_env() {
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -r "$1"
}

if [ "$TEST" = 1 ]; then
    phase "apt packages" apt_install "${RUNTIME_APT[@]}" "${TEST_APT[@]}"
    phase "python packages" python_env requirements-test.txt
else
    phase "apt packages" apt_install "${RUNTIME_APT[@]}"
    phase "python packages" python_env requirements.txt
fi

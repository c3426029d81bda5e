# Sourced by the set-up scripts: `apt_install WHAT PACKAGE...` installs Debian
# packages with apt-get (through sudo when not root; `apt-get update` and once more if
# the first try fails). Returns non-zero, with WHAT in the message, when it cannot:
# no apt-get, not root and no sudo, or the install failed.
apt_install() {
  local what=$1
  shift
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: apt-get not found; install $* by hand ($what)" >&2
    return 1
  fi
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "setup: not root and no sudo; cannot install $* ($what)" >&2
      return 1
    fi
    sudo="sudo"
  fi
  echo "setup: installing $* (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends "$@" >&2 && return 0
  $sudo apt-get update >&2 || true
  $sudo apt-get install -y --no-install-recommends "$@" >&2 && return 0
  echo "setup: could not install $* ($what)" >&2
  return 1
}

# Installs the Debian packages named as arguments that are missing (sourced by the scripts).
ensure_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "==> installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
}

# Installs a command-line tool from PyPI when it is missing (pip itself from Debian if needed).
ensure_pip_tool() {
  local tool=$1 package=${2:-$1}
  command -v "$tool" >/dev/null && return 0
  if ! python3 -m pip --version >/dev/null 2>&1; then
    ensure_packages python3-pip
  fi
  echo "==> installing $package from PyPI"
  python3 -m pip install --quiet "$package" 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages "$package"
  # pyenv puts new console scripts on PATH only after a rehash.
  if command -v pyenv >/dev/null; then pyenv rehash; fi
  hash -r
  command -v "$tool" >/dev/null || { echo "$tool not found after installing $package" >&2; return 1; }
}

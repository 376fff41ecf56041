#!/usr/bin/env bash
# Installs the Debian packages napari needs to render headless under Xvfb, when missing;
# with --book, Debian's Chromium instead (the book's browser check drives it headless).
# On Debian/Ubuntu as root: installs what is missing (a second run takes about a second).
# Elsewhere: names the packages and stops with a clear message.
set -euo pipefail

PACKAGES=(
  xvfb xauth libgl1-mesa-dri libegl1 libglx-mesa0 libxcb-cursor0 libxkbcommon-x11-0
  libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-randr0
  libxcb-shape0 libxcb-xfixes0 libxcb-xkb1 libdbus-1-3 libfontconfig1
)
PURPOSE="napari needs these system packages to render headless under Xvfb"
HINT="On other systems install the equivalent X virtual framebuffer (Xvfb), Mesa GL/EGL and the
xcb libraries for Qt 6, then run make again."
if [[ "${1:-}" == "--book" ]]; then
  PACKAGES=(chromium)
  PURPOSE="the book's browser check (make book-test) needs Chromium"
  HINT="On other systems install Chromium or Chrome (found on PATH as chromium, chromium-browser
or google-chrome), then run make again."
fi

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$p")
  done
else
  missing=("${PACKAGES[@]}")
fi

if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
  echo "system-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  exit 0
fi

cat >&2 <<MSG
system-deps: ${PURPOSE}:
  ${missing[*]}
On Debian/Ubuntu run as root:  apt-get install ${missing[*]}
${HINT}
MSG
exit 1

#!/bin/sh
# Install the Debian packages named as arguments that are not installed yet.
# As root: apt-get install -y. Otherwise: print the command and stop.
missing=""
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "exactonline: missing Debian packages:$missing" >&2
  echo "install them with:  sudo apt-get install -y$missing" >&2
  exit 1
fi
echo "exactonline: installing Debian packages:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || exit 1
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/tmp/exactonline-apt.log 2>&1 || {
  tail -n 30 /tmp/exactonline-apt.log >&2; exit 1; }
# Debian's nginx package may start a system nginx on port 80; the project never needs it.
if command -v service >/dev/null 2>&1 && pgrep -x nginx >/dev/null 2>&1 && [ -f /run/nginx.pid ]; then
  nginx -s stop 2>/dev/null || true
fi
exit 0

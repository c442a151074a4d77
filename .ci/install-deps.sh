#!/bin/bash
# Installs everything the demo and the test suite need on a fresh Debian 12
# machine, as root: the Debian packages each area lists in .ci/apt.d/*.txt
# (or only the areas named as arguments), the Go modules, and staticcheck.
# Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"

if [ "$(id -u)" != 0 ]; then
	echo "install-deps: run as root (apt-get, network namespaces, loop devices)" >&2
	exit 1
fi

# With arguments, only those areas' lists (.ci/apt.d/<area>.txt): the demo
# needs far less than the whole suite.
lists=(.ci/apt.d/*.txt)
if [ "$#" -gt 0 ]; then
	lists=()
	for a in "$@"; do lists+=(".ci/apt.d/$a.txt"); done
fi
mapfile -t pkgs < <(cat "${lists[@]}" | sed -e 's/#.*//' -e 's/[[:space:]]//g' | grep -v '^$' | sort -u)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	# Installing network managers must not start them and reconfigure this
	# machine's own network: policy-rc.d refuses every service start.
	policy=/usr/sbin/policy-rc.d
	own_policy=
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		own_policy=1
	fi
	trap '[ -n "$own_policy" ] && rm -f "$policy"' EXIT
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

go mod download
if ! command -v staticcheck >/dev/null; then
	GOBIN="$HOME/go/bin" go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi

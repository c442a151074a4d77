#!/bin/bash
# The built-in demo: the agent against a context ISO built from this
# folder, in a throw-away network namespace (veth links with the context's
# MACs) and a new UTS namespace, configuring a temporary root, and reporting
# READY to a fake OneGate inside that namespace. Nothing on this machine
# changes. Needs root (namespaces); `make demo` installs what it needs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin="$repo/bin/one-contextd"
mkiso="$repo/bin/mkcontextiso"
[ -x "$bin" ] && [ -x "$mkiso" ] || make -C "$repo" build >/dev/null

if [ "$(id -u)" != 0 ]; then
	echo "demo: needs root for network and UTS namespaces" >&2
	exit 1
fi

work="$(mktemp -d /tmp/one-contextd-demo.XXXXXX)"
ns="ocd-demo-$$"
cleanup() {
	[ -n "${gate_pid:-}" ] && kill "$gate_pid" 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	if [ -z "${KEEP:-}" ]; then rm -rf "$work"; else echo "demo: kept $work"; fi
}
trap cleanup EXIT

port=5030
# The context ISO, as oned would attach it.
mkdir -p "$work/iso"
sed "s/@PORT@/$port/" "$here/context.sh.in" >"$work/iso/context.sh"
cp "$here/init.sh" "$work/iso/init.sh"
printf 'demo-token-%s\n' "$$" >"$work/iso/token.txt"
"$mkiso" -o "$work/context.iso" "$work/iso"

# The root the agent configures: a few files a Debian system has.
root="$work/root"
mkdir -p "$root/etc" "$root/bin" "$root/usr/share/zoneinfo/Europe"
cp /bin/bash "$root/bin/bash"
# The image has systemd-networkd: the agent persists the network for it.
mkdir -p "$root/usr/bin"
printf '#!/bin/sh\nexit 0\n' >"$root/usr/bin/networkctl"
chmod 755 "$root/usr/bin/networkctl"
printf 'root:x:0:0:root:/root:/bin/bash\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
printf 'root:*:19000:0:99999:7:::\n' >"$root/etc/shadow"
printf 'root:*::\n' >"$root/etc/gshadow"
printf 'root ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n' >"$root/etc/sudoers"
chmod 0640 "$root/etc/shadow" "$root/etc/gshadow"
printf '127.0.0.1\tlocalhost\n# a line of the image, kept as it is\n' >"$root/etc/hosts"
cp /usr/share/zoneinfo/Europe/Prague "$root/usr/share/zoneinfo/Europe/Prague" 2>/dev/null || true
printf 'ID=debian\nVERSION_ID="12"\n' >"$root/etc/os-release"

touch "$work/seeded"

# The VM's network: two links with the context's MACs, plus one the
# context does not mention (which must keep its address).
ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" link add eth0 address 02:00:c0:00:02:0a type veth peer name peer0
ip -n "$ns" link add ens4 address 02:00:cb:00:71:0a type veth peer name peer1
ip -n "$ns" link add other0 type veth peer name peer2
ip -n "$ns" addr add 10.99.0.1/24 dev other0
for l in peer0 peer1 peer2 other0; do ip -n "$ns" link set "$l" up; done

# The fake OneGate, inside the namespace, where the agent reaches it.
token="$(tr -d '\n' <"$work/iso/token.txt")"
ip netns exec "$ns" "$bin" onegate-server --listen "127.0.0.1:$port" --vmid 42 --token "$token" \
	>"$work/onegate.log" 2>&1 &
gate_pid=$!
for _ in $(seq 50); do
	ip netns exec "$ns" bash -c "echo >/dev/tcp/127.0.0.1/$port" 2>/dev/null && break
	sleep 0.1
done

# The VM's own resolver: nothing answers on the namespace's loopback, so
# lookups fail at once instead of waiting for this machine's DNS, which the
# namespace cannot reach. A private mount namespace keeps the bind mount
# away from this machine.
printf 'nameserver 127.0.0.1\n' >"$work/resolv.conf"
vm() {
	ip netns exec "$ns" unshare --uts --mount --propagation private \
		bash -c 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"' vm "$work/resolv.conf" "$@"
}

echo "== one-contextd run (first boot)"
set +e
vm "$bin" run --root "$root" --context "$work/context.iso" --netcfg networkd --wait 0s
rc=$?
set -e
echo
echo "== one-contextd status"
"$bin" status --root "$root" || true
echo
echo "== kernel state in the namespace"
ip -n "$ns" -br addr
ip -n "$ns" route show table main
echo
echo "== files the agent wrote under the root"
(cd "$root" && find . -type f -newer "$work/seeded" ! -path './var/lib/*' | sort)
echo
echo "== what the fake OneGate holds for VM 42"
ip netns exec "$ns" bash -c "exec 3<>/dev/tcp/127.0.0.1/$port; printf 'GET /__fake/state HTTP/1.0\r\n\r\n' >&3; cat <&3" | sed -n '/^\r\{0,1\}$/,$p' | tail -n +2 || true
echo
echo "== second run, same context: nothing changes"
vm "$bin" run --root "$root" --context "$work/context.iso" --netcfg networkd --wait 0s 2>&1 | tail -n 1
exit $rc

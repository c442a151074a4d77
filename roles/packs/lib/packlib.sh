# Shared helpers of the one-context role packs (postgresql, webapp),
# sourced by the packs' own helpers. POSIX sh. Installed next to the role
# folders: /etc/one-context.d/roles/packlib.sh (the role runner only runs
# files inside a role's own folder, so this file is never run as a role).
#
# What a role script gets from it:
#   role_ips ROLE        addresses of the service's VMs of ROLE
#   service_ips          addresses of every VM of the service
#   put_file FILE MODE   replace FILE with stdin when it differs
#   firewall_apply ...   nftables table inet one_context_<role> (FIREWALL=YES)
#   tls_setup NAME       certificate and key (TLS=YES), from the context or
#                        generated once; tls_publish sends its fingerprint
#                        to OneGate; tls_trust_peers pins the peers'
#
# Where it keeps things (a pack sets them before sourcing this file):
#   PACK_STATE_DIR  firewall files, the last fingerprint published
#                   (default /var/lib/one-context-packs)
#   TLS_DIR         the certificate and key (default /etc/one-context-packs/tls)
#
# Rules the packs keep:
#  - secrets (passwords, TLS_KEY_BASE64) never reach a command line or the
#    log: they go through printf (a shell builtin, so no process list shows
#    it) into stdin or 0600 files;
#  - idempotent: a second run with the same context rewrites nothing,
#    restarts nothing.

# The variables set here are read by the scripts that source this file.
# shellcheck disable=SC2034

set -eu

log() { printf '%s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

PACK_STATE_DIR=${PACK_STATE_DIR:-/var/lib/one-context-packs}
TLS_DIR=${TLS_DIR:-/etc/one-context-packs/tls}

# is_yes VALUE: the context's boolean (YES, yes, y, true, 1).
is_yes() {
	case ${1:-} in
	[Yy][Ee][Ss] | [Yy] | [Tt][Rr][Uu][Ee] | 1) return 0 ;;
	esac
	return 1
}

# role_ips ROLE: the first address of each VM of the service's ROLE, from
# ONECONTEXT_ROLE_<R>_IPS (R upper-cased, other characters as _).
role_ips() {
	rv=ONECONTEXT_ROLE_$(printf '%s' "$1" | tr '[:lower:]' '[:upper:]' | tr -c 'A-Z0-9\n' '_')_IPS
	eval "printf '%s' \"\${$rv:-}\""
}

# service_ips: every address of every role of the service.
service_ips() {
	all=
	for r in ${ONECONTEXT_ROLES:-}; do
		all="$all $(role_ips "$r")"
	done
	printf '%s' "$all"
}

# self_ip: this VM's address (the service's view, else ETH0_IP).
self_ip() { printf '%s' "${ONECONTEXT_SELF_IP:-${ETH0_IP:-}}"; }

# check_ipv4 ADDR[/LEN]: refuse anything but an IPv4 address or network,
# since addresses are written into nginx and nftables files.
check_ipv4() {
	case $1 in
	'' | *[!0-9./]* | */*/*) die "\"$1\" is not an IPv4 address or CIDR" ;;
	esac
}

# put_file FILE MODE [OWNER]: replace FILE with stdin when it differs
# (atomically, by rename); prints "changed" when it did. The temporary
# file is created 0600, so a secret is never readable on the way.
put_file() {
	pf_tmp=$1.one-context.$$
	(umask 077 && cat > "$pf_tmp")
	if [ -f "$1" ] && cmp -s "$pf_tmp" "$1"; then
		rm -f "$pf_tmp"
		return 0
	fi
	chmod "$2" "$pf_tmp"
	[ -z "${3:-}" ] || chown "$3" "$pf_tmp"
	mv -f "$pf_tmp" "$1"
	echo changed
}

# pgpass_field VALUE: VALUE escaped for a .pgpass line (\ and :).
pgpass_field() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/:/\\:/g'; }

# ---------------------------------------------------------------------
# Firewall (FIREWALL=YES)
#
# firewall_apply "PORTS" "ADDRESSES": the TCP PORTS (space-separated)
# accept connections from ADDRESSES (IPv4 addresses or CIDRs) and loopback
# only; anyone else gets a TCP reset. The rules are the table
# inet one_context_<role>, nothing else of the host's firewall is touched.
# The file first declares, then deletes, then defines the table: nft -f
# runs it as one transaction, so the table is replaced as a whole (re-runs
# are idempotent and there is no moment without rules). The file is
# checked with nft -c before it is applied. Without FIREWALL=YES the table
# is removed if an earlier run made it.
firewall_apply() {
	fw_table=one_context_$(printf '%s' "${ONECONTEXT_ROLE:-pack}" | tr -c 'A-Za-z0-9_\n' '_')
	if ! is_yes "${FIREWALL:-NO}"; then
		if command -v nft >/dev/null 2>&1 && nft list table inet "$fw_table" >/dev/null 2>&1; then
			nft delete table inet "$fw_table"
			log "firewall: table inet $fw_table removed (FIREWALL is not YES)"
		fi
		return 0
	fi
	command -v nft >/dev/null 2>&1 || die "FIREWALL=YES but nft is not installed (package nftables)"
	fw_ports=
	for p in $1; do
		case $p in '' | *[!0-9]*) die "\"$p\" is not a port" ;; esac
		fw_ports="${fw_ports:+$fw_ports, }$p"
	done
	fw_allowed=
	for a in $2; do
		check_ipv4 "$a"
		fw_allowed="${fw_allowed:+$fw_allowed, }$a"
	done
	mkdir -p "$PACK_STATE_DIR"
	fw_file=$PACK_STATE_DIR/firewall-$fw_table.nft
	fw_changed=$(
		{
			echo "# Written by a one-context role pack (role ${ONECONTEXT_ROLE:-}); applied with nft -f."
			echo "table inet $fw_table"
			echo "delete table inet $fw_table"
			echo "table inet $fw_table {"
			echo "	set peers {"
			echo "		type ipv4_addr"
			echo "		flags interval"
			echo "		auto-merge"
			[ -z "$fw_allowed" ] || echo "		elements = { $fw_allowed }"
			echo "	}"
			echo "	chain input {"
			echo "		type filter hook input priority filter; policy accept;"
			echo "		iifname \"lo\" accept"
			echo "		tcp dport { $fw_ports } ip saddr @peers accept"
			echo "		tcp dport { $fw_ports } reject with tcp reset"
			echo "	}"
			echo "}"
		} | put_file "$fw_file" 0600
	)
	if [ -z "$fw_changed" ] && nft list table inet "$fw_table" >/dev/null 2>&1; then
		log "firewall: table inet $fw_table unchanged"
		return 0
	fi
	nft -c -f "$fw_file" || die "firewall: nft rejects $fw_file"
	nft -f "$fw_file"
	log "firewall: TCP $fw_ports open to ${fw_allowed:-nobody} only (table inet $fw_table)"
}

# ---------------------------------------------------------------------
# TLS (TLS=YES)
#
# tls_setup NAME: TLS_CERT_FILE and TLS_KEY_FILE (0600) in $TLS_DIR, and
# TLS_FINGERPRINT, the certificate's SHA-256 fingerprint (AB:CD:...);
# TLS_CHANGED is "changed" when the certificate or key was (re)written, so
# the service using them restarts.
#  - From the context: TLS_CERT_BASE64 and TLS_KEY_BASE64 (PEM, base64);
#    the key must match the certificate.
#  - Else generated once (first boot), self-signed, EC P-256, for ten
#    years, named NAME (subjectAltName DNS:NAME and the VM's address); the
#    peers do not trust it by a CA but by its fingerprint, which the VM
#    publishes through OneGate (tls_publish).
tls_setup() {
	TLS_CHANGED=''
	# The folder is public (certificates and pinned peers' certificates are,
	# and services running as another user read them); the key is 0600.
	mkdir -p "$TLS_DIR"
	chmod 0755 "$TLS_DIR"
	TLS_CERT_FILE=$TLS_DIR/cert.pem
	TLS_KEY_FILE=$TLS_DIR/key.pem
	if [ -n "${TLS_CERT_BASE64:-}" ] || [ -n "${TLS_KEY_BASE64:-}" ]; then
		if [ -z "${TLS_CERT_BASE64:-}" ] || [ -z "${TLS_KEY_BASE64:-}" ]; then
			die "TLS_CERT_BASE64 and TLS_KEY_BASE64 go together"
		fi
		# Decoded into 0600 files beside the real ones, checked, then moved
		# in; a refused pair leaves nothing behind.
		(umask 077 && printf '%s' "$TLS_CERT_BASE64" | base64 -d > "$TLS_DIR/cert.in" 2>/dev/null) ||
			tls_refuse "TLS_CERT_BASE64 is not base64"
		(umask 077 && printf '%s' "$TLS_KEY_BASE64" | base64 -d > "$TLS_DIR/key.in" 2>/dev/null) ||
			tls_refuse "TLS_KEY_BASE64 is not base64"
		c_pub=$(openssl x509 -in "$TLS_DIR/cert.in" -noout -pubkey 2>/dev/null) || tls_refuse "TLS_CERT_BASE64 is not a PEM certificate"
		k_pub=$(openssl pkey -in "$TLS_DIR/key.in" -pubout 2>/dev/null) || tls_refuse "TLS_KEY_BASE64 is not a PEM private key"
		[ "$c_pub" = "$k_pub" ] || tls_refuse "TLS_KEY_BASE64 is not the key of TLS_CERT_BASE64"
		TLS_CHANGED=$(put_file "$TLS_CERT_FILE" 0644 < "$TLS_DIR/cert.in")
		TLS_CHANGED=$TLS_CHANGED$(put_file "$TLS_KEY_FILE" 0600 < "$TLS_DIR/key.in")
		rm -f "$TLS_DIR/cert.in" "$TLS_DIR/key.in"
		echo context > "$TLS_DIR/source"
	elif [ ! -s "$TLS_CERT_FILE" ] || [ ! -s "$TLS_KEY_FILE" ] || [ "$(cat "$TLS_DIR/source" 2>/dev/null)" != generated ]; then
		ts_ip=$(self_ip)
		(umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
			-subj "/CN=$1" -addext "subjectAltName=DNS:$1${ts_ip:+,IP:$ts_ip}" \
			-keyout "$TLS_KEY_FILE.new" -out "$TLS_CERT_FILE.new" 2>/dev/null) || die "openssl could not make a certificate"
		chmod 0644 "$TLS_CERT_FILE.new"
		mv -f "$TLS_KEY_FILE.new" "$TLS_KEY_FILE"
		mv -f "$TLS_CERT_FILE.new" "$TLS_CERT_FILE"
		echo generated > "$TLS_DIR/source"
		TLS_CHANGED=changed
		log "tls: generated a self-signed certificate for $1"
	fi
	TLS_FINGERPRINT=$(fingerprint "$TLS_CERT_FILE")
}

tls_refuse() {
	rm -f "$TLS_DIR/cert.in" "$TLS_DIR/key.in"
	die "$1"
}

# fingerprint FILE: SHA-256 fingerprint of the PEM certificate in FILE.
fingerprint() { openssl x509 -in "$1" -noout -fingerprint -sha256 | sed 's/^[^=]*=//'; }

# onegate_publish KEY=VALUE: set an attribute of this VM through OneGate.
# The command is $ONEGATE_CMD (default onegate, the agent's or
# OpenNebula's), so images and tests can put another one in.
onegate_publish() { "${ONEGATE_CMD:-onegate}" vm update --data "$1"; }

# tls_publish: publish TLS_FINGERPRINT once per certificate. A failure is
# a warning (single mode has no OneGate): the next run tries again, and
# peers refuse this VM until then.
tls_publish() {
	mkdir -p "$PACK_STATE_DIR"
	[ "$(cat "$PACK_STATE_DIR/tls-published" 2>/dev/null)" != "$TLS_FINGERPRINT" ] || return 0
	if onegate_publish "TLS_FINGERPRINT=$TLS_FINGERPRINT" >/dev/null; then
		printf '%s\n' "$TLS_FINGERPRINT" > "$PACK_STATE_DIR/tls-published"
		log "tls: published TLS_FINGERPRINT=$TLS_FINGERPRINT"
	else
		warn "tls: could not publish the certificate's fingerprint through OneGate; peers cannot pin it yet"
	fi
}

# role_nodes ROLE: "VMID=ADDRESS" for each VM of ROLE, from the service
# JSON file of the role runner (python3 reads the JSON).
role_nodes() {
	python3 - "${ONECONTEXT_SERVICE_JSON:?no service JSON: TLS pinning needs a service}" "$1" <<'PY'
import json, sys
view = json.load(open(sys.argv[1]))
for role in (view.get("service") or {}).get("roles") or []:
    if role["name"] == sys.argv[2]:
        for node in role.get("nodes") or []:
            if node.get("ips"):
                print(node["vmid"] + "=" + node["ips"][0])
PY
}

# peer_fingerprint VMID: the TLS_FINGERPRINT the VM published.
peer_fingerprint() {
	"${ONEGATE_CMD:-onegate}" vm show "$1" --json | python3 -c '
import json, sys
print(json.load(sys.stdin)["VM"].get("USER_TEMPLATE", {}).get("TLS_FINGERPRINT", ""))'
}

# tls_trust_peers ROLE PORT BUNDLE [STARTTLS]: write BUNDLE, the
# certificates this VM trusts for the VMs of ROLE.
#  - TLS_CA_BASE64 in the context: that (a CA or the peers' certificates).
#  - Certificates from the context and no CA: the VM's own certificate (the
#    service shares one certificate).
#  - Generated certificates: each peer's certificate, fetched from
#    ADDRESS:PORT (openssl s_client, with -starttls STARTTLS for
#    PostgreSQL) and kept only when its SHA-256 fingerprint is the one the
#    peer published through OneGate: the peers pin each other.
# Prints "changed" when BUNDLE changed.
tls_trust_peers() {
	tp_tmp=$3.new.$$
	if [ -n "${TLS_CA_BASE64:-}" ]; then
		printf '%s' "$TLS_CA_BASE64" | base64 -d > "$tp_tmp" 2>/dev/null || die "TLS_CA_BASE64 is not base64"
	elif [ "$(cat "$TLS_DIR/source" 2>/dev/null)" = context ]; then
		cp "$TLS_CERT_FILE" "$tp_tmp"
	else
		: > "$tp_tmp"
		for tp_node in $(role_nodes "$1"); do
			tp_vm=${tp_node%%=*} tp_ip=${tp_node#*=}
			check_ipv4 "$tp_ip"
			tp_want=$(peer_fingerprint "$tp_vm") || die "tls: cannot read VM $tp_vm through OneGate"
			[ -n "$tp_want" ] || die "tls: VM $tp_vm ($1 at $tp_ip) has published no TLS_FINGERPRINT"
			# shellcheck disable=SC2086 # no -starttls when $4 is empty
			timeout 20 openssl s_client -connect "$tp_ip:$2" ${4:+-starttls $4} < /dev/null 2>/dev/null |
				openssl x509 > "$tp_tmp.peer" 2>/dev/null || die "tls: no certificate from $tp_ip:$2 ($1 VM $tp_vm)"
			tp_got=$(fingerprint "$tp_tmp.peer")
			[ "$tp_got" = "$tp_want" ] ||
				die "tls: $tp_ip:$2 ($1 VM $tp_vm) presents $tp_got but published $tp_want: not trusted"
			cat "$tp_tmp.peer" >> "$tp_tmp"
			rm -f "$tp_tmp.peer"
		done
		[ -s "$tp_tmp" ] || die "tls: no VM of role $1 to trust"
	fi
	put_file "$3" 0644 < "$tp_tmp"
	rm -f "$tp_tmp"
}

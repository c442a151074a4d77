# Shared helpers of the PostgreSQL role pack, sourced by the role scripts
# (master/, replica/, single/). POSIX sh. Installed next to the role
# folders: /etc/one-context.d/roles/postgresql.sh.
#
# Rules the pack keeps:
#  - passwords never on a command line or in the log: SQL goes to psql on
#    stdin (printf is a shell builtin, so it shows in no process list), the
#    replica's password lives in a 0600 passfile named by primary_conninfo;
#  - idempotent: every run converges to the same files and roles;
#  - version-independent: the cluster is the first one pg_lsclusters lists.
#
# Where the cluster is. Normally from pg_lsclusters (Debian's layout:
# configuration in /etc/postgresql/<ver>/<cluster>, started with
# pg_ctlcluster). An image with another layout (and the pack's tests) can
# name it instead:
#   PG_CLUSTER_CONF  directory of postgresql.conf and pg_hba.conf
#   PG_CLUSTER_DATA  data directory
#   PG_CLUSTER_BIN   directory of pg_ctl, psql, pg_basebackup
#   PG_CLUSTER_PORT  port (default 5432)
#   PG_CLUSTER_SOCKET  socket directory (default /var/run/postgresql)
#   PG_CLUSTER_OWNER   system user running the cluster (default postgres)
#   PG_CLUSTER_LOG     server log when not started by pg_ctlcluster

# The PG_* variables set here are read by the scripts that source this file.
# shellcheck disable=SC2034

# The helpers every pack shares (log, die, firewall_apply, tls_*).
# shellcheck source=../lib/packlib.sh
. "$(dirname "$0")/../packlib.sh"

pg_find() {
	if [ -n "${PG_CLUSTER_DATA:-}" ]; then
		PG_DATA=$PG_CLUSTER_DATA
		PG_CONF=${PG_CLUSTER_CONF:-$PG_CLUSTER_DATA}
		PG_BIN=${PG_CLUSTER_BIN:?PG_CLUSTER_BIN must be set with PG_CLUSTER_DATA}
		PG_PORT=${PG_CLUSTER_PORT:-5432}
		PG_SOCKET=${PG_CLUSTER_SOCKET:-/var/run/postgresql}
		PG_OWNER=${PG_CLUSTER_OWNER:-postgres}
		PG_VER='' PG_NAME=''
		return 0
	fi
	command -v pg_lsclusters >/dev/null 2>&1 || die "pg_lsclusters not found: is PostgreSQL installed?"
	# -h: no header. Fields: version cluster port status owner datadir log.
	# shellcheck disable=SC2046 # split into fields on purpose
	set -- $(pg_lsclusters -h | head -n 1)
	[ $# -ge 6 ] || die "no PostgreSQL cluster found (pg_lsclusters lists none)"
	PG_VER=$1 PG_NAME=$2 PG_PORT=$3 PG_OWNER=$5 PG_DATA=$6
	PG_CONF=/etc/postgresql/$PG_VER/$PG_NAME
	PG_BIN=/usr/lib/postgresql/$PG_VER/bin
	PG_SOCKET=/var/run/postgresql
}

as_owner() { runuser -u "$PG_OWNER" -- "$@"; }

# pg_ctl_do start|stop|restart|reload
pg_ctl_do() {
	if [ -n "$PG_VER" ]; then
		pg_ctlcluster "$PG_VER" "$PG_NAME" "$1"
	else
		as_owner "$PG_BIN/pg_ctl" -D "$PG_CONF" -l "${PG_CLUSTER_LOG:-$PG_CONF/postgresql.log}" -w -t 60 "$1" >/dev/null
	fi
}

pg_running() { as_owner "$PG_BIN/pg_isready" -q -h "$PG_SOCKET" -p "$PG_PORT"; }

# pg_ensure_running: start, or restart when $1 is "changed".
pg_ensure_running() {
	if pg_running; then
		if [ "${1:-}" = changed ]; then pg_ctl_do restart; fi
	else
		pg_ctl_do start
	fi
	i=0
	until pg_running; do
		i=$((i + 1)); [ $i -le 60 ] || die "PostgreSQL does not accept connections"
		sleep 1
	done
}

# psql_in: run the SQL read from stdin as the superuser, over the socket.
psql_in() {
	as_owner "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET" -p "$PG_PORT" -d "${1:-postgres}"
}

# psql_value SQL: one value, read from the socket.
psql_value() {
	printf '%s\n' "$1" | as_owner "$PG_BIN/psql" -X -A -t -h "$PG_SOCKET" -p "$PG_PORT" -d postgres
}

# sql_literal VALUE: VALUE as a quoted SQL string literal ('' for ').
sql_literal() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }

# sql_ident NAME: refuse anything but a plain identifier, so names can be
# written into SQL and configuration unquoted.
sql_ident() {
	case $1 in
	'' | [0-9]* | *[!A-Za-z0-9_]*) die "\"$1\" is not a plain identifier (letters, digits, _)" ;;
	esac
	printf '%s' "$1"
}

# write_if_changed FILE MODE: replace FILE with stdin when it differs;
# prints "changed" when it did.
write_if_changed() {
	tmp=$1.one-context.$$
	cat > "$tmp"
	if [ -f "$1" ] && cmp -s "$tmp" "$1"; then
		rm -f "$tmp"
		return 0
	fi
	chmod "$2" "$tmp"
	chown "$PG_OWNER:" "$tmp" 2>/dev/null || true
	mv -f "$tmp" "$1"
	echo changed
}

# pg_include: make postgresql.conf read one-context.conf (once).
pg_include() {
	grep -q "^include_if_exists = 'one-context.conf'" "$PG_CONF/postgresql.conf" && return 0
	printf "\n# Settings managed by one-context role scripts.\ninclude_if_exists = 'one-context.conf'\n" >> "$PG_CONF/postgresql.conf"
	echo changed
}

# hba_block LINES: put LINES between the pack's markers at the top of
# pg_hba.conf (first match wins there), replacing an earlier block.
hba_block() {
	hba=$PG_CONF/pg_hba.conf
	{
		echo "# BEGIN one-context role pack"
		printf '%s\n' "$1" | sed '/^$/d'
		echo "# END one-context role pack"
		sed '/^# BEGIN one-context role pack$/,/^# END one-context role pack$/d' "$hba"
	} | write_if_changed "$hba" 0640
}

# ensure_login_role NAME PASSWORD [ATTRS]: create or update a role; the
# password goes to psql on stdin.
ensure_login_role() {
	name=$(sql_ident "$1")
	[ -n "$2" ] || die "no password for role $name"
	{
		printf "SELECT 'CREATE ROLE %s' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%s')\\\\gexec\n" "$name" "$name"
		printf 'ALTER ROLE %s WITH LOGIN %s PASSWORD %s;\n' "$name" "${3:-}" "$(sql_literal "$2")"
	} | psql_in postgres
}

# ensure_database NAME [OWNER]
ensure_database() {
	db=$(sql_ident "$1")
	owner=${2:+ OWNER $(sql_ident "$2")}
	printf "SELECT 'CREATE DATABASE %s%s' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '%s')\\\\gexec\n" \
		"$db" "$owner" "$db" | psql_in postgres
}

# pg_tls NAME: with TLS=YES, the server's certificate and key (tls_setup:
# from the context or generated, named NAME) copied into the configuration
# directory, owned by the cluster's user (PostgreSQL refuses a key others
# can read). Sets PG_SSL_CONF (lines for one-context.conf; empty without
# TLS, which leaves the distribution's ssl setting alone), PG_HBA_TYPE
# (hostssl with TLS: no connection without it, else host) and
# PG_TLS_CHANGED ("changed" when the server's files changed: reload).
pg_tls() {
	PG_SSL_CONF='' PG_HBA_TYPE=host PG_TLS_CHANGED=''
	is_yes "${TLS:-NO}" || return 0
	tls_setup "$1"
	PG_TLS_CHANGED=$(put_file "$PG_CONF/one-context-server.crt" 0644 "$PG_OWNER:" < "$TLS_CERT_FILE")
	PG_TLS_CHANGED=$PG_TLS_CHANGED$(put_file "$PG_CONF/one-context-server.key" 0600 "$PG_OWNER:" < "$TLS_KEY_FILE")
	PG_HBA_TYPE=hostssl
	PG_SSL_CONF="ssl = on
ssl_cert_file = '$PG_CONF/one-context-server.crt'
ssl_key_file = '$PG_CONF/one-context-server.key'"
}

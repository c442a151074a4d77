# Helpers of the web-application role pack, sourced by its role scripts
# (database/, backend/, frontend/). POSIX sh. Installed next to the role
# folders: /etc/one-context.d/roles/webapp.sh, with packlib.sh (the
# helpers every pack shares) and the backend's application,
# webapp-backend.py. The role runner only runs files inside a role's own
# folder, so none of these is ever run as a role.
#
# Every path the pack writes can be moved (the tests run several "VMs" on
# one machine): WEBAPP_CONF_DIR (default /etc/one-context-webapp: the
# backend's configuration, the pgpass file, tls/ with the certificate) and
# WEBAPP_STATE_DIR (default /var/lib/one-context-webapp: pid and log of a
# directly started backend, firewall files).

# The variables set here are read by the scripts that source this file.
# shellcheck disable=SC2034

WEBAPP_CONF_DIR=${WEBAPP_CONF_DIR:-/etc/one-context-webapp}
WEBAPP_STATE_DIR=${WEBAPP_STATE_DIR:-/var/lib/one-context-webapp}
WEBAPP_LIB=$(cd "$(dirname "$0")/.." && pwd)
PACK_STATE_DIR=$WEBAPP_STATE_DIR
TLS_DIR=$WEBAPP_CONF_DIR/tls
# shellcheck source=../lib/packlib.sh
. "$WEBAPP_LIB/packlib.sh"

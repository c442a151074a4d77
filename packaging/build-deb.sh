#!/bin/sh
# Build one-contextd_<version>_amd64.deb with dpkg-deb (no debhelper run).
#
# usage: packaging/build-deb.sh VERSION OUTDIR
#   VERSION  Debian version; "1.2.3" makes a native package (changelog.gz),
#            "1.2.3-1" a non-native one (changelog.Debian.gz).
#   OUTDIR   where the .deb goes; its path is printed on stdout.
# env:
#   BIN      a static linux/amd64 one-contextd to package instead of building
#            ./cmd/one-contextd (CGO_ENABLED=0, stripped, -X main.version).
#   GO       go command (default: go)
#   SOURCE_DATE_EPOCH  timestamps of the files and the changelog (default:
#            the last commit's time), so that two builds give the same .deb.
set -eu

if [ $# -ne 2 ]; then
	echo "usage: $0 VERSION OUTDIR" >&2
	exit 2
fi
VERSION=$1
OUTDIR=$2
case $VERSION in
*[!A-Za-z0-9.+~-]* | "" | [!0-9]*)
	echo "build-deb: bad version '$VERSION' (Debian versions start with a digit and use [A-Za-z0-9.+~-])" >&2
	exit 2
	;;
esac

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
GO=${GO:-go}
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH

mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/one-contextd-deb.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
umask 022
chmod 0755 "$STAGE"

# 1. the static binary
mkdir -p "$STAGE/usr/sbin" "$STAGE/usr/bin"
if [ -n "${BIN:-}" ]; then
	install -m 0755 "$BIN" "$STAGE/usr/sbin/one-contextd"
else
	(cd "$REPO" && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 "$GO" build -trimpath -buildvcs=false \
		-ldflags "-s -w -X main.version=$VERSION" -o "$STAGE/usr/sbin/one-contextd" ./cmd/one-contextd)
fi
if readelf -lW "$STAGE/usr/sbin/one-contextd" 2>/dev/null | grep -q 'Requesting program interpreter'; then
	echo "build-deb: $STAGE/usr/sbin/one-contextd is dynamically linked; build it with CGO_ENABLED=0" >&2
	exit 1
fi
# Multi-call: as "onegate" it is OpenNebula's onegate client.
ln -s ../sbin/one-contextd "$STAGE/usr/bin/onegate"

# 2. systemd units and udev rules (the /usr locations work on merged and
# unmerged /usr alike)
mkdir -p "$STAGE/usr/lib/systemd/system" "$STAGE/usr/lib/udev/rules.d"
install -m 0644 "$HERE"/systemd/*.service "$HERE"/systemd/*.timer "$STAGE/usr/lib/systemd/system/"
install -m 0644 "$HERE"/udev/*.rules "$STAGE/usr/lib/udev/rules.d/"

# 3. role packs, when the tree has them
if [ -d "$REPO/roles/packs" ]; then
	mkdir -p "$STAGE/usr/share/one-contextd/roles"
	cp -R "$REPO/roles/packs/." "$STAGE/usr/share/one-contextd/roles/"
	# The packs' Go tests stay in the repository.
	find "$STAGE/usr/share/one-contextd/roles" -name '*_test.go' -delete
fi

# 4. configuration directory kept from one-context (see the man page)
mkdir -p "$STAGE/etc/one-context.d"

# 5. documentation: man pages, copyright, changelog
mkdir -p "$STAGE/usr/share/man/man8" "$STAGE/usr/share/man/man1" "$STAGE/usr/share/doc/one-contextd"
gzip -9n <"$HERE/man/one-contextd.8" >"$STAGE/usr/share/man/man8/one-contextd.8.gz"
ln -s ../man8/one-contextd.8.gz "$STAGE/usr/share/man/man1/onegate.1.gz"
install -m 0644 "$HERE/deb/copyright" "$STAGE/usr/share/doc/one-contextd/copyright"
case $VERSION in
*-*) CHANGELOG=changelog.Debian.gz ;;
*) CHANGELOG=changelog.gz ;; # native package
esac
{
	printf 'one-contextd (%s) unstable; urgency=medium\n\n' "$VERSION"
	printf '  * Release %s: static agent, systemd units, udev rules.\n\n' "$VERSION"
	printf ' -- one-contextd maintainers <one-contextd@example.org>  %s\n' \
		"$(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$STAGE/usr/share/doc/one-contextd/$CHANGELOG"
if [ -f "$HERE/deb/lintian-overrides" ]; then
	mkdir -p "$STAGE/usr/share/lintian/overrides"
	install -m 0644 "$HERE/deb/lintian-overrides" "$STAGE/usr/share/lintian/overrides/one-contextd"
fi

# 6. control area
mkdir -p "$STAGE/DEBIAN"
for s in postinst prerm postrm; do
	install -m 0755 "$HERE/deb/$s" "$STAGE/DEBIAN/$s"
done
(cd "$STAGE" && find etc -type f 2>/dev/null | sed 's|^|/|' | sort) >"$STAGE/DEBIAN/conffiles"
[ -s "$STAGE/DEBIAN/conffiles" ] || rm "$STAGE/DEBIAN/conffiles"
(cd "$STAGE" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort | xargs md5sum) >"$STAGE/DEBIAN/md5sums"
chmod 0644 "$STAGE/DEBIAN/md5sums"
SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@INSTALLED_SIZE@/$SIZE/" "$HERE/deb/control.in" >"$STAGE/DEBIAN/control"

find "$STAGE" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
DEB="$OUTDIR/one-contextd_${VERSION}_amd64.deb"
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null
echo "$DEB"

// Package packaging holds no Go code: it is the home of the Debian package,
// the systemd units, the udev rules, the image baking and VM scripts, and of
// the tests that check them with the real validators (systemd-analyze
// verify, udevadm verify, sh -n, shellcheck).
package packaging

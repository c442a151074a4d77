// Package e2e holds the tests that check the agent as it ships: they build
// the static binary and the .deb, run lintian, install the package into
// Debian roots made with mmdebstrap, and boot real VMs under qemu (TCG) with
// a CONTEXT CD-ROM, reading the results from outside: the serial console
// and the fake OneGate on host loopback, reached through slirp guestfwd.
//
// They are slow (minutes), so they run only with ONE_CONTEXTD_E2E=1
// (make e2e); without qemu, the kernel or the tools they skip and say why.
// BenchmarkBootSystemd (make bench-boot) measures boots.
package e2e

package e2e

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

// The context every minimal scenario starts from: the NIC that carries the
// OneGate channel, and OneGate itself.
const baseContext = `ETH0_MAC='52:54:00:12:34:56'
ETH0_IP='10.0.2.15'
ETH0_MASK='255.255.255.0'
ETH0_GATEWAY='10.0.2.2'
ONEGATE_ENDPOINT='http://10.0.2.100:5030'
REPORT_READY='YES'
VMID='42'
`

// TestMinimalBoot boots the Debian cloud kernel with a busybox initramfs
// whose /init runs `one-contextd run --stage all` once, against a CONTEXT
// CD-ROM on virtio-scsi; one boot per scenario. The checks read the serial
// console (the guest's addresses, routes, hostname, files) and the fake
// OneGate on host loopback.
func TestMinimalBoot(t *testing.T) {
	need(t, "qemu-system-x86_64", "xorriso", "socat", "cpio", "apt-get", "dpkg-deb", "depmod")
	kernel, initrd := lab.initramfs(t)
	startScript := "#!/bin/sh\necho \"ran as $(id -u) in $PWD host $(hostname)\" > /tmp/e2e-start-script\n"

	scenarios := []struct {
		name    string
		context string
		files   map[string]string
		check   func(t *testing.T, b *boot)
	}{
		{
			name:    "static-ipv4-hostname-token-file",
			context: baseContext + "SET_HOSTNAME='e2e-guest'\nETH0_DNS='10.0.2.3'\nETH0_SEARCH_DOMAIN='e2e.example'\n",
			files:   map[string]string{"token.txt": vmToken + "\n"},
			check: func(t *testing.T, b *boot) {
				b.wantLine(t, "E2E-HOSTNAME=", "e2e-guest")
				b.wantLine(t, "E2E-ADDR ", "inet 10.0.2.15/24")
				b.wantLine(t, "E2E-ROUTE4 ", "default via 10.0.2.2")
				b.wantLine(t, "E2E-FILE /etc/resolv.conf:", "nameserver 10.0.2.3")
				b.wantLine(t, "E2E-FILE /etc/hosts:", "e2e-guest")
			},
		},
		{
			name: "ipv6-mtu-route",
			context: baseContext + "ONEGATE_TOKEN='" + vmToken + "'\nETH0_MTU='1400'\nETH0_IP6='2001:db8:e2e::15'\nETH0_IP6_PREFIX_LENGTH='64'\n" +
				"ETH0_ROUTES='192.0.2.0/24 via 10.0.2.2'\n",
			check: func(t *testing.T, b *boot) {
				b.wantLine(t, "E2E-LINK ", "mtu 1400")
				b.wantLine(t, "E2E-ADDR6 ", "inet6 2001:db8:e2e::15/64")
				b.wantLine(t, "E2E-ROUTE4 ", "192.0.2.0/24 via 10.0.2.2")
			},
		},
		{
			name: "start-script",
			context: baseContext + "ONEGATE_TOKEN='" + vmToken + "'\nSET_HOSTNAME='scripted'\n" +
				"START_SCRIPT_BASE64='" + base64.StdEncoding.EncodeToString([]byte(startScript)) + "'\n",
			check: func(t *testing.T, b *boot) {
				b.wantLine(t, "E2E-FILE /tmp/e2e-start-script:", "ran as 0")
				b.wantLine(t, "E2E-FILE /tmp/e2e-start-script:", "host scripted")
			},
		},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			g, port := gate(t)
			iso := contextISO(t, sc.context, sc.files)
			ready := watchReady(g)
			b := bootVM(t, vmSpec{
				Kernel: kernel, Initrd: initrd, Append: "console=ttyS0 panic=-1 quiet",
				ISO: iso, GatePort: port, Timeout: 2 * time.Minute,
			})
			at, ok := ready.when()
			exit := b.first("E2E-AGENT-EXIT=")
			if !strings.HasPrefix(exit, "0 ") {
				b.fail(t, "agent exit %q, want 0; failed steps: %q", exit, failedSteps(b))
			}
			if !ok {
				b.fail(t, "READY=YES never reached the fake OneGate (requests: %v)", g.Requests())
			} else {
				t.Logf("boot %.2fs, READY at OneGate %.2fs after qemu start", b.Wall.Seconds(), at.Sub(b.Started).Seconds())
			}
			for _, l := range b.Serial {
				if strings.Contains(l, vmToken) {
					t.Errorf("the OneGate token appears on the console: %q", l)
				}
			}
			sc.check(t, b)
		})
	}
}

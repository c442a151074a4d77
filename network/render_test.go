package network

import (
	"strings"
	"testing"

	"one-contextd/network/model"
	"one-contextd/network/render"
)

func renderOffline(t *testing.T, typ render.Type, lines ...string) (string, []model.Problem) {
	t.Helper()
	ctx := buildCtx(t, lines...)
	m, _ := model.Plan(ctx.Network, onegateAddr(ctx.OneGate), nil)
	files, problems, err := render.Render(typ, m, render.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, f := range files {
		b.Write(f.Data)
	}
	return b.String(), problems
}

// An IPv4 alias on a NIC without an IPv4 address of its own (DHCP, or a
// bad ETHx_IP) is written, and no "network" line without a network.
func TestInterfacesAliasesWithoutOwnAddress(t *testing.T) {
	got, _ := renderOffline(t, render.Interfaces,
		"ETH0_MAC='02:00:c0:00:02:0a'", "ETH0_METHOD='dhcp'",
		"ETH0_ALIAS0_MAC='02:00:c0:00:02:0b'", "ETH0_ALIAS0_IP='192.0.2.11'",
		"ETH1_MAC='02:00:c6:33:64:14'", "ETH1_IP='192.0.2.300'",
		"ETH1_ALIAS0_MAC='02:00:c6:33:64:15'", "ETH1_ALIAS0_IP='198.51.100.11'",
		"ETH1_ALIAS1_MAC='02:00:c6:33:64:16'", "ETH1_ALIAS1_IP='198.51.100.12'",
	)
	for _, want := range []string{
		"iface eth0 inet dhcp\n    up ip addr replace 192.0.2.11/24 dev eth0\n",
		"iface eth1 inet static\n    address 198.51.100.11/24\niface eth1 inet static\n    address 198.51.100.12/24\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("interfaces lacks\n%s\ngot:\n%s", want, got)
		}
	}
	if strings.Contains(got, "network invalid") {
		t.Errorf("interfaces has a network line without a network:\n%s", got)
	}
}

// NetworkManager refuses a keyfile with an IPv6 address under method
// ignore (IP6_METHOD auto) and drops the whole connection: the alias's
// address is left out, as a problem naming it; under auto (IP6_METHOD
// dhcp) it is written.
func TestNMAliasIPv6UnderAutoAndDHCP(t *testing.T) {
	alias := []string{"ETH0_MAC='02:00:c0:00:02:0a'", "ETH0_IP='192.0.2.10'", "ETH0_ALIAS0_MAC='02:00:c0:00:02:0b'", "ETH0_ALIAS0_IP6='2001:db8:1::b'"}
	got, problems := renderOffline(t, render.NM, append(alias, "ETH0_IP6_METHOD='auto'")...)
	_, v6, _ := strings.Cut(got, "[ipv6]")
	if !strings.Contains(v6, "method=ignore") || strings.Contains(v6, "address") {
		t.Errorf("IP6_METHOD auto: [ipv6] = %s", v6)
	}
	if !strings.Contains(got, "address1=192.0.2.10/24") {
		t.Errorf("IP6_METHOD auto: IPv4 address missing:\n%s", got)
	}
	if len(problems) != 1 || problems[0].Var != "ETH0_ALIAS0_IP6" {
		t.Errorf("IP6_METHOD auto: problems %v, want one naming ETH0_ALIAS0_IP6", problems)
	}
	got, problems = renderOffline(t, render.NM, append(alias, "ETH0_IP6_METHOD='dhcp'")...)
	_, v6, _ = strings.Cut(got, "[ipv6]")
	if !strings.Contains(v6, "method=auto") || !strings.Contains(v6, "address1=2001:db8:1::b/64") || len(problems) != 0 {
		t.Errorf("IP6_METHOD dhcp: [ipv6] = %s, problems %v", v6, problems)
	}
}

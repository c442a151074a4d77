package fakegate

// AddShopScenario loads the scenario of shared/reference/onegate-fixtures:
// service 7 "shop" of alice with roles frontend (VMs 43, 44), backend (41,
// 42) and database (40) on 192.0.2.0/24, every VM READY=YES with one
// metric. GET /vm as VM 41 then answers exactly vm.json.
func (g *Gate) AddShopScenario() error {
	common := map[string]string{"DESCRIPTION": "one-contextd demo image", "LOGO": "images/logos/debian.png", "READY": "YES"}
	vms := []struct {
		id             int
		name, ip       string
		metric, amount string
	}{
		{40, "database_0_(service_7)", "192.0.2.10", "PG_CONNECTIONS", "61"},
		{41, "backend_0_(service_7)", "192.0.2.21", "APP_QUEUE_DEPTH", "14"},
		{42, "backend_1_(service_7)", "192.0.2.22", "APP_QUEUE_DEPTH", "9"},
		{43, "frontend_0_(service_7)", "192.0.2.31", "NGINX_ACTIVE_CONN", "118"},
		{44, "frontend_1_(service_7)", "192.0.2.32", "NGINX_ACTIVE_CONN", "97"},
	}
	for _, v := range vms {
		ut := map[string]string{v.metric: v.amount}
		for k, val := range common {
			ut[k] = val
		}
		if err := g.AddVMSpec(VMSpec{ID: v.id, Name: v.name, NICs: []NICSpec{{IP: v.ip}}, UserTemplate: ut}); err != nil {
			return err
		}
	}
	return g.SetService(ServiceSpec{ID: 7, Name: "shop", Roles: []RoleSpec{
		{Name: "frontend", Parents: []string{"backend"}, VMs: []int{43, 44}},
		{Name: "backend", Parents: []string{"database"}, VMs: []int{41, 42}},
		{Name: "database", VMs: []int{40}},
	}})
}

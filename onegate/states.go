package onegate

import "strconv"

// OpenNebula state numbers that the agent tests for.
const (
	VMStateActive   = 3
	LCMStateBoot    = 2
	LCMStateRunning = 3
)

// OneFlow service/role state numbers.
const (
	ServiceRunning  = 2
	ServiceScaling  = 8
	ServiceCooldown = 10
)

var vmStates = [...]string{"INIT", "PENDING", "HOLD", "ACTIVE", "STOPPED", "SUSPENDED", "DONE", "FAILED",
	"POWEROFF", "UNDEPLOYED", "CLONING", "CLONING_FAILURE"}

var lcmStates = [...]string{
	"LCM_INIT", "PROLOG", "BOOT", "RUNNING", "MIGRATE", "SAVE_STOP", "SAVE_SUSPEND", "SAVE_MIGRATE",
	"PROLOG_MIGRATE", "PROLOG_RESUME", "EPILOG_STOP", "EPILOG", "SHUTDOWN", "CANCEL", "FAILURE",
	"CLEANUP_RESUBMIT", "UNKNOWN", "HOTPLUG", "SHUTDOWN_POWEROFF", "BOOT_UNKNOWN", "BOOT_POWEROFF",
	"BOOT_SUSPENDED", "BOOT_STOPPED", "CLEANUP_DELETE", "HOTPLUG_SNAPSHOT", "HOTPLUG_NIC",
	"HOTPLUG_SAVEAS", "HOTPLUG_SAVEAS_POWEROFF", "HOTPLUG_SAVEAS_SUSPENDED", "SHUTDOWN_UNDEPLOY",
	"EPILOG_UNDEPLOY", "PROLOG_UNDEPLOY", "BOOT_UNDEPLOY", "HOTPLUG_PROLOG_POWEROFF",
	"HOTPLUG_EPILOG_POWEROFF", "BOOT_MIGRATE", "BOOT_FAILURE", "BOOT_MIGRATE_FAILURE",
	"PROLOG_MIGRATE_FAILURE", "PROLOG_FAILURE", "EPILOG_FAILURE", "EPILOG_STOP_FAILURE",
	"EPILOG_UNDEPLOY_FAILURE", "PROLOG_MIGRATE_POWEROFF", "PROLOG_MIGRATE_POWEROFF_FAILURE",
	"PROLOG_MIGRATE_SUSPEND", "PROLOG_MIGRATE_SUSPEND_FAILURE", "BOOT_UNDEPLOY_FAILURE",
	"BOOT_STOPPED_FAILURE", "PROLOG_RESUME_FAILURE", "PROLOG_UNDEPLOY_FAILURE",
	"DISK_SNAPSHOT_POWEROFF", "DISK_SNAPSHOT_REVERT_POWEROFF", "DISK_SNAPSHOT_DELETE_POWEROFF",
	"DISK_SNAPSHOT_SUSPENDED", "DISK_SNAPSHOT_REVERT_SUSPENDED", "DISK_SNAPSHOT_DELETE_SUSPENDED",
	"DISK_SNAPSHOT", "DISK_SNAPSHOT_REVERT", "DISK_SNAPSHOT_DELETE", "PROLOG_MIGRATE_UNKNOWN",
	"PROLOG_MIGRATE_UNKNOWN_FAILURE", "DISK_RESIZE", "DISK_RESIZE_POWEROFF", "DISK_RESIZE_UNDEPLOYED",
	"HOTPLUG_NIC_POWEROFF", "HOTPLUG_RESIZE", "HOTPLUG_SAVEAS_UNDEPLOYED", "HOTPLUG_SAVEAS_STOPPED",
}

var serviceStates = [...]string{"PENDING", "DEPLOYING", "RUNNING", "UNDEPLOYING", "WARNING", "DONE",
	"FAILED_UNDEPLOYING", "FAILED_DEPLOYING", "SCALING", "FAILED_SCALING", "COOLDOWN", "DEPLOYING_NETS",
	"UNDEPLOYING_NETS", "FAILED_DEPLOYING_NETS", "FAILED_UNDEPLOYING_NETS", "HOLD"}

// Role states equal the service's up to COOLDOWN; then 11 is HOLD.
var roleStates = [...]string{"PENDING", "DEPLOYING", "RUNNING", "UNDEPLOYING", "WARNING", "DONE",
	"FAILED_UNDEPLOYING", "FAILED_DEPLOYING", "SCALING", "FAILED_SCALING", "COOLDOWN", "HOLD"}

// VMStateName names a VM state the way the onegate CLI does: the LCM state
// for an ACTIVE VM, else the VM state. Unknown numbers print as digits.
func VMStateName(state, lcm int) string {
	if state == VMStateActive {
		return name(lcmStates[:], lcm)
	}
	return name(vmStates[:], state)
}

// ServiceStateName names a OneFlow service state.
func ServiceStateName(state int) string { return name(serviceStates[:], state) }

// RoleStateName names a OneFlow role state.
func RoleStateName(state int) string { return name(roleStates[:], state) }

func name(table []string, n int) string {
	if n >= 0 && n < len(table) {
		return table[n]
	}
	return strconv.Itoa(n)
}

// Package cli is the `onegate` command for scripts inside a VM, a drop-in
// for OpenNebula's own (one-apps context-linux/src/usr/bin/onegate.rb):
// same subcommands, flags, output and exit codes.
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"one-contextd/context/shvars"
	"one-contextd/onegate"
	"one-contextd/secret"
)

// DefaultEnvFile is where the agent writes ONEGATE_ENDPOINT, VMID,
// ONEGATE_TOKEN and the context variables, as NAME='value' lines.
const DefaultEnvFile = "/run/one-context/one_env"

// exitFail is the reference command's exit code for every failure (Ruby's
// exit -1).
const exitFail = 255

// vmActions are the actions `onegate vm ACTION ID` accepts (delete and
// shutdown are kept from OpenNebula 4.x, as upstream).
var vmActions = []string{"resume", "stop", "suspend", "terminate", "reboot", "poweroff", "resched",
	"unresched", "hold", "release", "delete", "shutdown"}

const helpText = `## COMMANDS

    * onegate vm show [VMID] [--json]
    * onegate vm update [VMID] --data KEY=VALUE\nKEY2=VALUE2
    * onegate vm update [VMID] --erase KEY
    * onegate vm ACTION VMID
        * onegate resume [VMID]
        * onegate stop [VMID]
        * onegate suspend [VMID]
        * onegate terminate [VMID] [--hard]
        * onegate reboot [VMID] [--hard]
        * onegate poweroff [VMID] [--hard]
        * onegate resched [VMID]
        * onegate unresched [VMID]
        * onegate hold [VMID]
        * onegate release [VMID]
    * onegate service show [--json][--extended]
    * onegate service scale --role ROLE --cardinality CARDINALITY
    * onegate vrouter show [--json]
    * onegate vnet show VNETID [--json][--extended]
`

// options are the parsed flags.
type options struct {
	data        string
	updateType  int // 0: neither --data nor --erase; 1 update; 2 erase
	role        string
	cardinality string
	hasRole     bool
	hasCard     bool
	json        bool
	extended    bool
	hard        bool
	help        bool
}

// command runs one invocation.
type command struct {
	env    func(string) string
	stdout io.Writer
	stderr io.Writer
	tty    bool
	opts   options
	args   []string
}

// Main runs `onegate args...`; env looks up environment variables.
func Main(args []string, env func(string) string, stdout, stderr io.Writer) int {
	opts, rest, err := parseOptions(args)
	if err != nil {
		fmt.Fprintf(stderr, "onegate: %v\n", err)
		return exitFail
	}
	if opts.help {
		fmt.Fprint(stderr, helpText)
		return 0
	}
	c := &command{env: env, stdout: stdout, stderr: stderr, tty: isTerminal(stdout), opts: opts, args: rest}
	return c.run()
}

func (c *command) arg(i int) string {
	if i < len(c.args) {
		return c.args[i]
	}
	return ""
}

func (c *command) notSupported() int {
	fmt.Fprint(c.stderr, helpText)
	fmt.Fprintf(c.stderr, "\nAction %s not supported\n", c.arg(1))
	return exitFail
}

func (c *command) run() int {
	switch c.arg(0) {
	case "vm":
		return c.vm()
	case "service":
		return c.service()
	case "vrouter":
		if c.arg(1) != "show" {
			return c.notSupported()
		}
		return c.call(func(ctx context.Context, cl *onegate.Client) error {
			r, err := cl.VRouter(ctx)
			if err != nil {
				return err
			}
			if c.opts.json {
				return c.printJSON(r.Raw)
			}
			c.header("VROUTER "+r.ID, true)
			c.keyValue("NAME", r.Name)
			c.keyValue("VMS", strings.Join(r.VMIDs, ","))
			fmt.Fprintln(c.stdout)
			return nil
		})
	case "vnet":
		if c.arg(1) != "show" {
			return c.notSupported()
		}
		id := c.arg(2)
		if id == "" {
			fmt.Fprintln(c.stderr, "You have to provide a VNET ID")
			return exitFail
		}
		return c.call(func(ctx context.Context, cl *onegate.Client) error {
			n, err := cl.VNet(ctx, id, c.opts.extended)
			if err != nil {
				return err
			}
			if c.opts.json {
				return c.printJSON(n.Raw)
			}
			c.header("VNET", true)
			c.keyValue("ID", n.ID)
			fmt.Fprintln(c.stdout)
			return nil
		})
	default:
		fmt.Fprint(c.stderr, helpText)
		return exitFail
	}
}

func (c *command) vm() int {
	sub, id := c.arg(1), c.arg(2)
	switch {
	case sub == "show":
		return c.call(func(ctx context.Context, cl *onegate.Client) error {
			vm, err := cl.VMByID(ctx, id)
			if err != nil {
				return err
			}
			if c.opts.json {
				return c.printJSON(vm.Raw)
			}
			c.printVM(vm, false) // upstream prints only the name, --extended or not
			return nil
		})
	case sub == "update":
		if c.opts.updateType == 0 {
			fmt.Fprintln(c.stderr, "You have to provide the data as a param (--data, --erase)")
			return exitFail
		}
		return c.call(func(ctx context.Context, cl *onegate.Client) error {
			if c.opts.updateType == 2 {
				return cl.Erase(ctx, id, c.opts.data)
			}
			return cl.UpdateData(ctx, id, c.opts.data)
		})
	case contains(vmActions, sub):
		if id == "" {
			fmt.Fprintln(c.stderr, "You have to provide a VM ID")
			return exitFail
		}
		return c.call(func(ctx context.Context, cl *onegate.Client) error {
			return cl.Action(ctx, id, sub, c.opts.hard)
		})
	default:
		return c.notSupported()
	}
}

func (c *command) service() int {
	switch c.arg(1) {
	case "show":
		return c.call(func(ctx context.Context, cl *onegate.Client) error {
			s, err := cl.Service(ctx, c.opts.extended)
			if err != nil {
				return err
			}
			if c.opts.json {
				return c.printJSON(s.Raw)
			}
			c.header("SERVICE "+s.ID, true)
			c.keyValue("NAME", s.Name)
			c.keyValue("STATE", onegate.ServiceStateName(s.State))
			fmt.Fprintln(c.stdout)
			for _, r := range s.Roles {
				c.header("ROLE "+r.Name, false)
				for _, n := range r.Nodes {
					vm := n.VM
					if vm == nil { // vm_info null: OneFlow could not read the VM
						vm = &onegate.VM{ID: strconv.Itoa(n.DeployID), State: -1, LCMState: -1}
					}
					c.printVM(vm, c.opts.extended)
				}
				fmt.Fprintln(c.stdout)
			}
			return nil
		})
	case "scale":
		if !c.opts.hasRole || !c.opts.hasCard {
			fmt.Fprintln(c.stderr, "You have to provide a role and a cardinality (--role ROLE --cardinality N)")
			return exitFail
		}
		n, err := strconv.Atoi(strings.TrimSpace(c.opts.cardinality))
		if err != nil || n < 0 {
			fmt.Fprintf(c.stderr, "Cardinality %q is not a number\n", c.opts.cardinality)
			return exitFail
		}
		return c.call(func(ctx context.Context, cl *onegate.Client) error {
			return cl.Scale(ctx, c.opts.role, n)
		})
	default:
		return c.notSupported()
	}
}

func (c *command) printVM(vm *onegate.VM, extended bool) {
	c.header("VM "+vm.ID, true)
	c.keyValue("NAME", vm.Name)
	if !extended {
		return
	}
	c.keyValue("STATE", vm.StateName())
	for _, n := range vm.NICs {
		c.keyValue("IP", n.IP)
	}
}

// header prints a section title: bold (and underlined) and padded to 80
// columns on a terminal, plain otherwise.
func (c *command) header(s string, underline bool) {
	if !c.tty {
		fmt.Fprintln(c.stdout, s)
		return
	}
	style := "\x1b[1m"
	if underline {
		style += "\x1b[4m"
	}
	fmt.Fprintf(c.stdout, "%s%-80s\x1b[0m\n", style, s)
}

func (c *command) keyValue(k, v string) { fmt.Fprintf(c.stdout, "%-20s: %-20s\n", k, v) }

// printJSON pretty-prints an answer as the reference does (2-space indent,
// the server's key order).
func (c *command) printJSON(raw []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return fmt.Errorf("answer is not JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err := c.stdout.Write(buf.Bytes())
	return err
}

// call builds a client and runs fn, printing failures the reference way.
func (c *command) call(fn func(context.Context, *onegate.Client) error) int {
	cfg, err := loadConfig(c.env)
	if err != nil {
		fmt.Fprintf(c.stderr, "onegate: %v\n", err)
		return exitFail
	}
	// No retries, like the reference: a script sees the first answer.
	cfg.Retry = onegate.RetryPolicy{MaxAttempts: 1}
	cl, err := onegate.New(cfg)
	if err != nil {
		fmt.Fprintln(c.stderr, err)
		return exitFail
	}
	if err := fn(context.Background(), cl); err != nil {
		c.printError(err, cfg.Endpoint)
		return exitFail
	}
	return 0
}

func (c *command) printError(err error, endpoint string) {
	fmt.Fprintln(c.stderr, "ERROR: ")
	var ae *onegate.APIError
	var oe *onegate.Error
	switch {
	case errors.As(err, &ae):
		msg := ae.Message
		if !strings.HasSuffix(msg, "\n") {
			msg += "\n"
		}
		fmt.Fprint(c.stderr, msg)
	case errors.As(err, &oe) && oe.Transport():
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
			fmt.Fprintf(c.stderr, "Error timeout connecting to server (%v).\nServer: %s\n", oe.Err, hostPort(endpoint))
		} else {
			fmt.Fprintf(c.stderr, "Error connecting to server (%v).\nServer: %s\n", oe.Err, hostPort(endpoint))
		}
	default:
		fmt.Fprintln(c.stderr, err)
	}
}

func hostPort(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return endpoint
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return u.Hostname() + ":" + port
}

// loadConfig reads ONEGATE_ENDPOINT, VMID and the token (ONEGATE_TOKEN,
// else TOKENTXT) from the environment, each missing one from the agent's
// env file (ONECONTEXT_ENV_FILE, default DefaultEnvFile).
func loadConfig(env func(string) string) (onegate.Config, error) {
	endpoint, vmid := env("ONEGATE_ENDPOINT"), env("VMID")
	token := env("ONEGATE_TOKEN")
	if token == "" {
		token = env("TOKENTXT")
	}
	if endpoint == "" || vmid == "" || token == "" {
		path := env("ONECONTEXT_ENV_FILE")
		if path == "" {
			path = DefaultEnvFile
		}
		vars, err := readEnvFile(path)
		if err != nil && endpoint == "" {
			return onegate.Config{}, fmt.Errorf("no OneGate endpoint: ONEGATE_ENDPOINT is not set and %v", err)
		}
		if endpoint == "" {
			endpoint = vars.Value("ONEGATE_ENDPOINT")
		}
		if vmid == "" {
			vmid = vars.Value("VMID")
		}
		if token == "" {
			token = vars.Value("ONEGATE_TOKEN")
		}
		if token == "" {
			token = vars.Value("TOKENTXT")
		}
	}
	switch {
	case endpoint == "":
		return onegate.Config{}, errors.New("no OneGate endpoint (ONEGATE_ENDPOINT); is TOKEN=YES set in the VM's context?")
	case token == "":
		return onegate.Config{}, errors.New("no OneGate token (ONEGATE_TOKEN or TOKENTXT)")
	case vmid == "":
		return onegate.Config{}, errors.New("no VM id (VMID)")
	}
	return onegate.Config{Endpoint: endpoint, VMID: vmid, Token: secret.New(token)}, nil
}

// readEnvFile parses the agent's env file without a shell. Lines of
// one-context's own format ("export NAME=...") are read too.
func readEnvFile(path string) (*shvars.Vars, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	// Bad lines are skipped (their errors could quote a secret value).
	vars, _ := shvars.Parse(path, data)
	if vars.Value("ONEGATE_ENDPOINT") == "" && bytes.Contains(data, []byte("export ")) {
		lines := bytes.Split(data, []byte("\n"))
		for i, l := range lines {
			lines[i] = bytes.TrimPrefix(l, []byte("export "))
		}
		vars, _ = shvars.Parse(path, bytes.Join(lines, []byte("\n")))
	}
	return vars, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

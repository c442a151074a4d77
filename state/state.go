// Package state is what the agent remembers between runs, under a
// persistent directory of the root (/var/lib/one-contextd): the digest of
// the last applied context, so a run knows whether this is the first boot
// of the VM, an unchanged context or a changed one, and the record of the
// last run, which `status` prints.
//
// Nothing secret is stored here: digests, names and outcomes only.
package state

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"

	"one-contextd/engine"
	"one-contextd/fsroot"
)

// Dir is the agent's persistent state directory under the root.
const Dir = "/var/lib/one-contextd"

// Files under Dir.
const (
	ContextFile = Dir + "/context.json"
	RecordFile  = Dir + "/last-run.json"
	// RolesRecordFile keeps the timer's role reconfigure runs apart, so
	// `status` keeps showing the boot.
	RolesRecordFile = Dir + "/last-roles-run.json"
)

// Change says how the context relates to the last applied one.
type Change string

// Kinds of change.
const (
	FirstBoot Change = "first-boot" // no state, or state of another VM (a cloned image)
	Unchanged Change = "unchanged"
	Changed   Change = "changed"
)

// Applied is the remembered fingerprint of an applied context.
type Applied struct {
	VMID   string `json:"vmid"`
	Digest string `json:"digest"`
	// Files are the digests of context.sh and every file it references
	// (token.txt, init scripts, FILES_DS), by name, so a change can be
	// traced to a file.
	Files     map[string]string `json:"files"`
	AppliedAt time.Time         `json:"applied_at"`
}

// Fingerprint digests context.sh and the files it references. The token's
// digest is kept in the overall digest but not listed by content: a digest
// of a short secret would let anyone holding the state file test guesses.
func Fingerprint(vmid string, files map[string][]byte) Applied {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	all := sha256.New()
	a := Applied{VMID: vmid, Files: map[string]string{}}
	for _, n := range names {
		sum := sha256.Sum256(files[n])
		fmt.Fprintf(all, "%s\x00%x\x00", n, sum)
		if n == "token.txt" {
			a.Files[n] = "present"
			continue
		}
		a.Files[n] = "sha256:" + hex.EncodeToString(sum[:])
	}
	a.Digest = "sha256:" + hex.EncodeToString(all.Sum(nil))
	return a
}

// Compare classifies cur against the last applied context (nil: none).
// It also names the files that differ.
func Compare(last *Applied, cur Applied) (Change, []string) {
	if last == nil || last.VMID != cur.VMID {
		return FirstBoot, nil
	}
	if last.Digest == cur.Digest {
		return Unchanged, nil
	}
	var diff []string
	for n, d := range cur.Files {
		if last.Files[n] != d {
			diff = append(diff, n)
		}
	}
	for n := range last.Files {
		if _, ok := cur.Files[n]; !ok {
			diff = append(diff, n)
		}
	}
	if len(diff) == 0 {
		diff = append(diff, "token.txt") // only the token's content differs
	}
	sort.Strings(diff)
	return Changed, diff
}

// LoadApplied reads the last applied context; nil when there is none.
func LoadApplied(root *fsroot.Root) (*Applied, error) {
	data, err := root.ReadFile(ContextFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	var a Applied
	if err := json.Unmarshal(data, &a); err != nil {
		// A corrupt state file must not stop the boot: treat it as none.
		return nil, fmt.Errorf("state %s: %w (treated as a first boot)", ContextFile, err)
	}
	return &a, nil
}

// SaveApplied remembers a as the last applied context.
func SaveApplied(root *fsroot.Root, a Applied) error {
	return writeJSON(root, ContextFile, a)
}

// LoadRecord reads the last run record; nil when there is none.
func LoadRecord(root *fsroot.Root) (*engine.Record, error) {
	data, err := root.ReadFile(RecordFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	var r engine.Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("state %s: %w", RecordFile, err)
	}
	return &r, nil
}

// SaveRecord writes the run record atomically.
func SaveRecord(root *fsroot.Root, r *engine.Record) error {
	return writeJSON(root, RecordFile, r)
}

// SaveRecordAs writes a run record to another file of the state directory.
func SaveRecordAs(root *fsroot.Root, p string, r *engine.Record) error {
	return writeJSON(root, p, r)
}

func writeJSON(root *fsroot.Root, p string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("state %s: %w", p, err)
	}
	data = append(data, '\n')
	if _, err := root.WriteFile(p, data, fsroot.WriteOptions{Mode: 0o600, ForceMode: true}); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}

// BootID identifies the current boot (the kernel's random boot_id), so
// the network stage can continue the record the local stage began. It is
// read from the running kernel, whatever the root.
func BootID(readFile func(string) ([]byte, error)) string {
	data, err := readFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"one-contextd/fsroot"
	"one-contextd/state"
)

// PendingFile holds a report OneGate has not accepted yet. It names the
// attributes only: endpoint, VM id and token are read again from EnvFile
// when it is retried, so the file holds nothing secret.
const PendingFile = state.Dir + "/report-pending.json"

const pendingVersion = 1

// Attr is one attribute to set.
type Attr struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Pending is a report waiting for delivery.
type Pending struct {
	Version int    `json:"version"`
	Outcome string `json:"outcome"` // OutcomeReady or OutcomeFailed
	// VMID is the VM the report is about (not secret); a retry for another
	// VM (a cloned disk) drops it.
	VMID string `json:"vmid"`
	// RunStarted identifies the run record whose Report field a
	// successful retry updates.
	RunStarted time.Time `json:"run_started"`
	Queued     time.Time `json:"queued"`
	Set        []Attr    `json:"set"`
	Erase      []string  `json:"erase,omitempty"`
	LastError  string    `json:"last_error,omitempty"`
}

func savePending(root *fsroot.Root, p *Pending) error {
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return fmt.Errorf("pending report: %w", err)
	}
	data = append(data, '\n')
	if _, err := root.WriteFile(PendingFile, data, fsroot.WriteOptions{Mode: 0o600, ForceMode: true, DirMode: 0o700}); err != nil {
		return fmt.Errorf("pending report: %w", err)
	}
	return nil
}

// LoadPending reads the pending report: nil, nil when there is none.
func LoadPending(root *fsroot.Root) (*Pending, []byte, error) {
	data, err := root.ReadFile(PendingFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("pending report: %w", err)
	}
	var p Pending
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, data, fmt.Errorf("pending report %s: %w", PendingFile, err)
	}
	if p.Version != pendingVersion {
		return nil, data, fmt.Errorf("pending report %s: unknown version %d", PendingFile, p.Version)
	}
	if len(p.Set) == 0 {
		return nil, data, fmt.Errorf("pending report %s: no attributes", PendingFile)
	}
	return &p, data, nil
}

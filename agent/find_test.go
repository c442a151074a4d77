package agent

import (
	"os"
	"path/filepath"
	"time"

	"one-contextd/context/medium"
)

// findOptions points Find at an empty fake /sys and /dev under dir.
func findOptions(dir string) medium.FindOptions {
	_ = os.MkdirAll(filepath.Join(dir, "sys/class/block"), 0o755)
	_ = os.MkdirAll(filepath.Join(dir, "dev"), 0o755)
	return medium.FindOptions{SysRoot: filepath.Join(dir, "sys"), DevRoot: filepath.Join(dir, "dev"),
		Dirs: []string{filepath.Join(dir, "context")}, Timeout: 300 * time.Millisecond, Poll: 50 * time.Millisecond}
}

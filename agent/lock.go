package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// LockFile serialises runs: the boot stages, a udev-triggered reconfigure
// and the timer never configure the system at the same time.
const LockFile = RuntimeDir + "/lock"

// lockWait bounds the wait for another run, as one-context's 120 s.
const lockWait = 120 * time.Second

// acquireLock takes an exclusive flock on the lock file under the root,
// waiting at most wait. The lock goes with the process, so a crashed run
// never leaves it behind.
func acquireLock(ctx context.Context, hostPath string, wait time.Duration) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(hostPath), 0o700); err != nil {
		return nil, fmt.Errorf("lock %s: %w", hostPath, err)
	}
	f, err := os.OpenFile(hostPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", hostPath, err)
	}
	deadline := time.Now().Add(wait)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); _ = f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", hostPath, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s: another run holds it for more than %s", hostPath, wait)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", hostPath, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

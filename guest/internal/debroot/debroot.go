// Package debroot gives tests a minimal Debian root tree, so that useradd
// --root, chpasswd --root, visudo and ssh-keygen run for real against files
// that are not this machine's.
//
// The tree is built once per machine and package set with
// `mmdebstrap --variant=minbase` into a cache directory under os.TempDir(),
// guarded by a lock file so that parallel test binaries of one `go test`
// run share it, and copied per test (/usr hard-linked, the rest copied).
package debroot

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Suite and Packages describe the tree.
const (
	Suite    = "bookworm"
	Packages = "passwd,sudo,openssh-server,openssh-client,tzdata"
)

// MirrorEnv overrides the Debian mirror taken from /etc/apt/sources.list*.
const MirrorEnv = "ONE_CONTEXTD_DEBIAN_MIRROR"

// New returns the host path of a fresh copy of the minimal tree, removed
// when the test ends. It skips the test when not root or when the tree
// cannot be built.
func New(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mmdebstrap and useradd --root run as root")
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		t.Skip("mmdebstrap is not installed (apt-get install mmdebstrap); no Debian root tree to test against")
	}
	cache, err := cached()
	if err != nil {
		t.Skipf("cannot build the minimal Debian tree: %v", err)
	}
	dst := filepath.Join(t.TempDir(), "root")
	if err := copyTree(cache, dst); err != nil {
		t.Fatalf("copy the Debian tree: %v", err)
	}
	return dst
}

func cacheKey(mirror string) string {
	h := sha256.Sum256([]byte(Suite + "\x00" + Packages + "\x00" + mirror))
	return hex.EncodeToString(h[:6])
}

// cached builds the tree once, under a lock shared by every test process.
func cached() (string, error) {
	mirror := Mirror()
	dir := filepath.Join(os.TempDir(), "one-contextd-debroot-"+cacheKey(mirror))
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	done := filepath.Join(dir, ".one-contextd-complete")
	if _, err := os.Stat(done); err == nil {
		return dir, nil
	}
	// A build that died half-way leaves a directory without the marker.
	_ = os.RemoveAll(dir)
	tmp := dir + ".building"
	_ = os.RemoveAll(tmp)
	start := time.Now()
	cmd := exec.Command("mmdebstrap", "--variant=minbase", "--include="+Packages, "--quiet", Suite, tmp, mirror)
	out, err := cmd.CombinedOutput()
	if err != nil {
		_ = os.RemoveAll(tmp)
		return "", fmt.Errorf("mmdebstrap %s %s: %w: %s", Suite, mirror, err, tail(out))
	}
	if err := os.WriteFile(filepath.Join(tmp, ".one-contextd-complete"), []byte(time.Since(start).String()+"\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	return dir, nil
}

// Mirror is the Debian archive apt on this machine uses for the suite.
func Mirror() string {
	if m := os.Getenv(MirrorEnv); m != "" {
		return m
	}
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, f := range files {
		if m := mirrorFromDeb822(f); m != "" {
			return m
		}
	}
	files, _ = filepath.Glob("/etc/apt/sources.list.d/*.list")
	for _, f := range append([]string{"/etc/apt/sources.list"}, files...) {
		if m := mirrorFromList(f); m != "" {
			return m
		}
	}
	return "http://deb.debian.org/debian"
}

func mirrorFromDeb822(file string) string {
	data, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	for _, stanza := range strings.Split(string(data), "\n\n") {
		var uris, suites string
		for _, l := range strings.Split(stanza, "\n") {
			if v, ok := strings.CutPrefix(l, "URIs:"); ok {
				uris = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(l, "Suites:"); ok {
				suites = strings.TrimSpace(v)
			}
		}
		for _, s := range strings.Fields(suites) {
			if s == Suite && uris != "" && !strings.Contains(uris, "security") {
				return strings.Fields(uris)[0]
			}
		}
	}
	return ""
}

func mirrorFromList(file string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		w := strings.Fields(sc.Text())
		if len(w) >= 3 && w[0] == "deb" && w[2] == Suite && !strings.HasPrefix(w[1], "[") {
			return w[1]
		}
	}
	return ""
}

// copyTree copies the cached tree. /usr is hard-linked (tests never
// write there, and tools replace files rather than edit them in place);
// everything else is copied so tests can change it freely.
func copyTree(src, dst string) error {
	if err := os.Mkdir(dst, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		flag := "-a"
		if e.Name() == "usr" {
			flag = "-al"
		}
		if out, err := exec.Command("cp", flag, filepath.Join(src, e.Name()), dst+"/").CombinedOutput(); err != nil {
			return fmt.Errorf("cp %s %s: %w: %s", flag, e.Name(), err, tail(out))
		}
	}
	return nil
}

func tail(out []byte) string {
	s := strings.TrimSpace(string(out))
	if len(s) > 600 {
		s = "..." + s[len(s)-600:]
	}
	return s
}

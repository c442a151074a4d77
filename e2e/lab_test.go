package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// lab is the work shared by every test of one `go test` run: the agent
// binary, the .deb, the kernel and the images are built once, lazily, in a
// temp dir that TestMain removes. It is the package's one piece of shared
// state, because rebuilding them per test would cost minutes.
var lab *workLab

type workLab struct {
	dir  string
	repo string

	mu    sync.Mutex
	built map[string]result
}

type result struct {
	val string
	err error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "one-contextd-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	wd, _ := os.Getwd()
	lab = &workLab{dir: dir, repo: filepath.Dir(wd), built: map[string]result{}}
	// Every package built in this run gets the same timestamps, even if a
	// commit lands while it runs (build-deb.sh takes the last commit's).
	if os.Getenv("SOURCE_DATE_EPOCH") == "" {
		if out, err := exec.Command("git", "-C", lab.repo, "log", "-1", "--format=%ct").Output(); err == nil {
			os.Setenv("SOURCE_DATE_EPOCH", strings.TrimSpace(string(out)))
		}
	}
	code := m.Run()
	if os.Getenv("ONE_CONTEXTD_E2E_KEEP") == "" {
		_ = os.RemoveAll(dir)
	} else {
		fmt.Fprintln(os.Stderr, "e2e work dir kept:", dir)
	}
	os.Exit(code)
}

// need skips unless e2e tests were asked for and every tool is there.
func need(t testing.TB, tools ...string) {
	t.Helper()
	if os.Getenv("ONE_CONTEXTD_E2E") == "" {
		t.Skip("end-to-end test: set ONE_CONTEXTD_E2E=1 (make e2e) to run it")
	}
	if os.Geteuid() != 0 {
		t.Skip("end-to-end test needs root (mmdebstrap, dpkg, apt-get download)")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (see .ci/apt.d/packaging.txt): %v", tool, err)
		}
	}
}

// once builds key with fn the first time and returns the cached result after.
func (l *workLab) once(t testing.TB, key string, fn func() (string, error)) string {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.built[key]
	if !ok {
		start := time.Now()
		r.val, r.err = fn()
		l.built[key] = r
		t.Logf("built %s in %.1fs", key, time.Since(start).Seconds())
	}
	if r.err != nil {
		t.Fatalf("%s: %v", key, r.err)
	}
	return r.val
}

// run runs a command with a timeout and returns its stdout; stderr goes
// into the error.
func run(timeout time.Duration, dir, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s%s", name, strings.Join(args, " "), err, tail(out.String(), 2000), tail(errb.String(), 4000))
	}
	return out.String(), nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// agent builds the static binary the way the package does.
func (l *workLab) agent(t testing.TB) string {
	return l.once(t, "agent", func() (string, error) {
		out := filepath.Join(l.dir, "one-contextd")
		cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", "-s -w -X main.version=0.0.0~e2e", "-o", out, "./cmd/one-contextd")
		cmd.Dir = l.repo
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
		if b, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build: %w\n%s", err, b)
		}
		return out, nil
	})
}

// deb builds the package with packaging/build-deb.sh from the agent.
func (l *workLab) deb(t testing.TB) string {
	bin := l.agent(t)
	return l.once(t, "deb", func() (string, error) {
		cmd := exec.Command(filepath.Join(l.repo, "packaging/build-deb.sh"), "0.0.0~e2e", filepath.Join(l.dir, "deb"))
		cmd.Env = append(os.Environ(), "BIN="+bin)
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("build-deb.sh: %w", err)
		}
		return strings.TrimSpace(string(out)), nil
	})
}

// kernel fetches and unpacks the Debian cloud kernel; it returns the
// unpacked tree and the version.
func (l *workLab) kernel(t testing.TB) (dir, version string) {
	kv := l.once(t, "kernel", func() (string, error) {
		out, err := run(5*time.Minute, l.repo, filepath.Join(l.repo, "packaging/vm/kernel.sh"), filepath.Join(l.dir, "kernel"))
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(out), nil
	})
	return filepath.Join(l.dir, "kernel", "k"), kv
}

// initramfs builds the minimal guest: busybox, the agent as the init's job.
func (l *workLab) initramfs(t testing.TB) (kernelImage, initrd string) {
	k, kv := l.kernel(t)
	bin := l.agent(t)
	initrd = l.once(t, "initramfs", func() (string, error) {
		out := filepath.Join(l.dir, "initrd.gz")
		_, err := run(2*time.Minute, l.repo, filepath.Join(l.repo, "packaging/vm/initramfs.sh"), k, kv, bin, out)
		return out, err
	})
	return filepath.Join(k, "boot", "vmlinuz-"+kv), initrd
}

// systemdImage builds a Debian 12 qcow2 image with the .deb installed and
// the network manager nm ("ifupdown", "networkd", "nm"); it returns the
// image, its kernel and its initrd.
func (l *workLab) systemdImage(t testing.TB, nm string) (image, kernel, initrd string) {
	return l.image(t, nm, l.deb(t))
}

// image builds the image for nm with deb installed ("none": without it).
func (l *workLab) image(t testing.TB, nm, deb string) (image, kernel, initrd string) {
	key := "image-" + nm
	if deb == "none" {
		key += "-nodeb"
	}
	dir := filepath.Join(l.dir, key)
	l.once(t, key, func() (string, error) {
		_, err := run(15*time.Minute, l.repo, filepath.Join(l.repo, "packaging/vm/mkimage.sh"), deb, nm, dir)
		return dir, err
	})
	return filepath.Join(dir, "root.qcow2"), filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd.img")
}

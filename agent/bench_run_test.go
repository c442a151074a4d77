package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"one-contextd/fsroot"
	"one-contextd/runner"
	"one-contextd/secret"
)

// BenchmarkRunStages is the agent's own cost of a whole boot job (every
// step, both stages) on the demo's context, with the tools answered by a
// fake runner and a kernel with no links: what the agent adds on top of
// the distribution's tools. Profile with -cpuprofile.
func BenchmarkRunStages(b *testing.B) {
	data, err := os.ReadFile("../testdata/demo/context.sh.in")
	if err != nil {
		b.Skip(err)
	}
	src := b.TempDir()
	ctxSh := strings.ReplaceAll(string(data), "@PORT@", "9")
	ctxSh = strings.ReplaceAll(ctxSh, "REPORT_READY='YES'", "REPORT_READY='NO'")
	_ = os.WriteFile(filepath.Join(src, "context.sh"), []byte(ctxSh), 0o644)
	_ = os.WriteFile(filepath.Join(src, "init.sh"), []byte("#!/bin/sh\n"), 0o755)
	rootDir := b.TempDir()
	for name, content := range map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/bash\ndemo:x:1000:1000::/home/demo:/bin/bash\n",
		"etc/group":  "root:x:0:\ndemo:x:1000:\n", "etc/shadow": "root:*:19000:0:99999:7:::\ndemo:*:19000:0:99999:7:::\n",
		"etc/os-release": "ID=debian\nVERSION_ID=\"12\"\n", "usr/bin/networkctl": "#!/bin/sh\n", "bin/bash": "#!/bin/sh\n",
	} {
		p := filepath.Join(rootDir, name)
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		_ = os.WriteFile(p, []byte(content), 0o755)
	}
	root, _ := fsroot.New(rootDir)
	opt := Options{Root: root, Source: src, Stage: StageAll, Log: zerolog.Nop(), Scrubber: &secret.Scrubber{},
		Run: &runner.Fake{}, Netlink: readOnlyNetlink{}, LockWait: -1,
		ReadHost: func(string) ([]byte, error) { return []byte("boot\n"), nil }}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		opt.Scrubber = &secret.Scrubber{}
		Run(context.Background(), opt)
	}
}

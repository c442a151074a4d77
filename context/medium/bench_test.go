package medium

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkOpenReadContext opens a ~1 MiB context ISO (Rock Ridge + Joliet,
// written by go-diskfs) and reads its 64 KiB context.sh, as a boot does.
func BenchmarkOpenReadContext(b *testing.B) {
	src := b.TempDir()
	line := []byte("ETH0_ROUTES='10.0.0.0/8 via 192.168.0.1, 172.16.0.0/12 via 192.168.0.1'\n")
	ctxSh := bytes.Repeat(line, 64<<10/len(line)+1)[:64<<10]
	if err := os.WriteFile(filepath.Join(src, "context.sh"), ctxSh, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(src, "files"), 0o755); err != nil {
		b.Fatal(err)
	}
	for i := range 16 {
		data := bytes.Repeat([]byte{byte(i)}, 64<<10)
		if err := os.WriteFile(filepath.Join(src, "files", fmt.Sprintf("payload-%02d.bin", i)), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	image := diskfsISO(b, src, "CONTEXT", true, true)
	if fi, err := os.Stat(image); err == nil {
		b.Logf("image %d bytes", fi.Size())
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		m, err := Open(image)
		if err != nil {
			b.Fatal(err)
		}
		data, err := m.ReadFile(ContextFile, 32<<20)
		if err != nil || len(data) != len(ctxSh) {
			b.Fatalf("ReadFile: %d bytes, %v", len(data), err)
		}
		m.Close()
	}
}

package medium

import (
	"bytes"
	"encoding/binary"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// nameOfLen is stem, then fill up to n bytes in all, then ext.
func nameOfLen(t *testing.T, stem, ext string, n int) string {
	t.Helper()
	fill := n - len(stem) - len(ext)
	if fill < 0 {
		t.Fatalf("%q + %q is longer than %d", stem, ext, n)
	}
	return stem + strings.Repeat("x", fill) + ext
}

// longNames are Rock Ridge names too long for one NM entry in a directory
// record: xorriso continues them in a SUSP continuation area (CE).
type longNames struct {
	long143, pairA, pairB, spaces, longDir string
}

func makeLongNames(t *testing.T) longNames {
	prefix := nameOfLen(t, "shared-prefix-of-two-files-", "", 120)
	n := longNames{
		long143: nameOfLen(t, "a-file-with-a-name-of-143-characters-", ".conf", 143),
		pairA:   nameOfLen(t, prefix+"-first-", ".txt", 150),
		pairB:   nameOfLen(t, prefix+"-other-", ".txt", 150),
		spaces:  "a name with  spaces .txt",
		longDir: nameOfLen(t, "a-directory-with-a-long-name-", "", 140),
	}
	for _, l := range []struct {
		name string
		n    int
	}{{n.long143, 143}, {n.pairA, 150}, {n.pairB, 150}, {n.longDir, 140}} {
		if len(l.name) != l.n {
			t.Fatalf("%q is %d bytes, want %d", l.name, len(l.name), l.n)
		}
	}
	return n
}

// writeFiles writes files (path -> contents) under a new temporary directory.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, data := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// genisoimageISO builds an ISO of src with genisoimage, which is what oned
// runs (as mkisofs) to build context ISOs.
func genisoimageISO(t *testing.T, src string, extra ...string) string {
	t.Helper()
	if _, err := exec.LookPath("genisoimage"); err != nil {
		t.Skip("genisoimage is not installed (apt-get install genisoimage); the xorriso images cover the same names")
	}
	out := filepath.Join(t.TempDir(), "context.iso")
	args := append([]string{"-quiet", "-o", out, "-V", "CONTEXT"}, extra...)
	args = append(args, src)
	if b, err := exec.Command("genisoimage", args...).CombinedOutput(); err != nil {
		t.Fatalf("genisoimage %v: %v\n%s", args, err, b)
	}
	return out
}

// checkMedium opens image and checks that it lists exactly files, with
// their contents, and no problems.
func checkMedium(t *testing.T, image string, files map[string]string) {
	t.Helper()
	m, err := Open(image)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	want := slices.Sorted(maps.Keys(files))
	if got := m.Files(); !slices.Equal(got, want) {
		t.Errorf("Files() =\n%q\nwant\n%q", got, want)
	}
	for p, data := range files {
		got, err := m.ReadFile(p, 0)
		if err != nil || string(got) != data {
			t.Errorf("ReadFile(%s) = %q, %v; want %q", p, got, err, data)
		}
	}
	if p := m.Problems(); len(p) != 0 {
		t.Errorf("Problems() = %q, want none", p)
	}
}

// TestRockRidgeLongNames reads names longer than one NM entry holds back
// whole, from images built the way oned builds context ISOs.
func TestRockRidgeLongNames(t *testing.T) {
	n := makeLongNames(t)
	files := map[string]string{
		ContextFile:                      "ONEGATE_ENDPOINT='http://10.0.0.1:5030'\n",
		n.long143:                        "143\n",
		n.pairA:                          "first of the pair\n",
		n.pairB:                          "other of the pair\n",
		n.spaces:                         "spaces\n",
		n.longDir + "/inner file.txt":    "inner\n",
		n.longDir + "/" + n.long143:      "nested 143\n",
		"files/" + n.pairA:               "nested first\n",
		"files/" + n.pairB:               "nested other\n",
		"files/short.txt":                "short\n",
		"files/.hidden-" + n.long143:     "dot\n",
		"files/" + n.long143[:100] + ".": "trailing dot\n",
	}
	src := writeFiles(t, files)
	// genisoimage -J refuses two names whose first 64 characters (Joliet)
	// are the same, so its -J image leaves the pairs out.
	noPairs := maps.Clone(files)
	for p := range noPairs {
		if strings.Contains(p, n.pairA) || strings.Contains(p, n.pairB) {
			delete(noPairs, p)
		}
	}
	noPairsSrc := writeFiles(t, noPairs)

	t.Run("xorriso -J -R (as oned)", func(t *testing.T) {
		checkMedium(t, xorrisoISO(t, src, "CONTEXT", "-J", "-R"), files)
	})
	t.Run("xorriso -R", func(t *testing.T) {
		checkMedium(t, xorrisoISO(t, src, "CONTEXT", "-R"), files)
	})
	t.Run("genisoimage -J -R (as oned)", func(t *testing.T) {
		checkMedium(t, genisoimageISO(t, noPairsSrc, "-J", "-R"), noPairs)
	})
	t.Run("genisoimage -R", func(t *testing.T) {
		checkMedium(t, genisoimageISO(t, src, "-R"), files)
	})
}

// TestRockRidgeLongDirNamesAlike has two directories whose names xorriso
// splits after the same first NM entry. go-diskfs looks directories up by
// that entry, so it can reach only the first; the other must be left out
// with a problem, never listed with the wrong contents.
func TestRockRidgeLongDirNamesAlike(t *testing.T) {
	n := makeLongNames(t)
	dirA, dirB := strings.TrimSuffix(n.pairA, ".txt"), strings.TrimSuffix(n.pairB, ".txt")
	files := map[string]string{
		ContextFile:       "A='1'\n",
		dirA + "/a.txt":   "in the first\n",
		dirB + "/b.txt":   "in the other\n",
		"files/plain.txt": "plain\n",
	}
	image := xorrisoISO(t, writeFiles(t, files), "CONTEXT", "-J", "-R")
	m, err := Open(image)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, p := range m.Files() {
		data, ok := files[p]
		if !ok {
			t.Errorf("Files() lists %q, which is not on the medium", p)
			continue
		}
		if got, err := m.ReadFile(p, 0); err != nil || string(got) != data {
			t.Errorf("ReadFile(%s) = %q, %v; want %q", p, got, err, data)
		}
	}
	for p := range files {
		if m.Has(p) {
			continue
		}
		dir, _, _ := strings.Cut(p, "/")
		if !strings.Contains(strings.Join(m.Problems(), "\n"), "directory "+dir+" left out") {
			t.Errorf("%s is missing and no problem says why; problems %q", p, m.Problems())
		}
	}
	for _, p := range []string{ContextFile, "files/plain.txt"} {
		if !m.Has(p) {
			t.Errorf("%s is missing", p)
		}
	}
	t.Logf("files %q, problems %q", m.Files(), m.Problems())
}

// patchNM rewrites the Rock Ridge name from into to (of the same length) in
// image, where xorriso wrote it as one NM entry.
func patchNM(t *testing.T, image []byte, from, to string) {
	t.Helper()
	nm := func(name string) []byte {
		return append([]byte{'N', 'M', byte(5 + len(name)), 1, 0}, name...)
	}
	if len(from) != len(to) || bytes.Count(image, nm(from)) != 1 {
		t.Fatalf("cannot rewrite NM %q to %q: found %d times", from, to, bytes.Count(image, nm(from)))
	}
	i := bytes.Index(image, nm(from))
	copy(image[i:], nm(to))
}

// TestDuplicateNames: a name listed twice leaves the later file out with a
// problem and the rest of the medium readable; a second context.sh still
// fails, as which of the two is the context cannot be told.
func TestDuplicateNames(t *testing.T) {
	files := map[string]string{
		ContextFile:  "A='1'\n",
		"contexu.sh": "not the context\n",
		"dup-a.txt":  "first\n",
		"dup-b.txt":  "second\n",
	}
	good, err := os.ReadFile(xorrisoISO(t, writeFiles(t, files), "CONTEXT", "-J", "-R"))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("other file", func(t *testing.T) {
		img := bytes.Clone(good)
		patchNM(t, img, "dup-b.txt", "dup-a.txt")
		p := writeFile(t, "dup.iso", img)
		m, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		want := []string{ContextFile, "contexu.sh", "dup-a.txt"}
		if got := m.Files(); !slices.Equal(got, want) {
			t.Errorf("Files() = %q, want %q", got, want)
		}
		if got, err := m.ReadFile("dup-a.txt", 0); err != nil || string(got) != "first\n" {
			t.Errorf("ReadFile(dup-a.txt) = %q, %v; want the first file", got, err)
		}
		problems := m.Problems()
		if len(problems) != 1 || !strings.Contains(problems[0], "medium "+p+": dup-a.txt: listed twice") {
			t.Errorf("Problems() = %q, want one naming the medium and dup-a.txt", problems)
		}
	})
	t.Run("context.sh", func(t *testing.T) {
		img := bytes.Clone(good)
		patchNM(t, img, "contexu.sh", ContextFile)
		p := writeFile(t, "dup.iso", img)
		m, err := Open(p)
		if err == nil {
			m.Close()
		}
		wantErr(t, err, p, "context.sh: listed twice")
	})
	t.Run("plain ISO 9660 names alike but for case", func(t *testing.T) {
		plain, err := os.ReadFile(xorrisoISO(t, writeFiles(t, files), "CONTEXT", "--norock"))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Count(plain, []byte("DUP_B.TXT;1")) != 1 {
			t.Fatalf("DUP_B.TXT;1 is %d times in the image", bytes.Count(plain, []byte("DUP_B.TXT;1")))
		}
		plain = bytes.Replace(plain, []byte("DUP_B.TXT;1"), []byte("dup_a.txt;1"), 1)
		m, err := Open(writeFile(t, "plain.iso", plain))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if got, want := m.Files(), []string{ContextFile, "contexu.sh", "dup_a.txt"}; !slices.Equal(got, want) {
			t.Errorf("Files() = %q, want %q", got, want)
		}
		if got, err := m.ReadFile("DUP_A.TXT", 0); err != nil || string(got) != "first\n" {
			t.Errorf("ReadFile(DUP_A.TXT) = %q, %v; want the first file", got, err)
		}
		if p := m.Problems(); len(p) != 1 || !strings.Contains(p[0], "dup_a.txt: listed twice") {
			t.Errorf("Problems() = %q", p)
		}
	})
}

// nmEntry is a Rock Ridge NM entry.
func nmEntry(flags byte, name string) []byte {
	return append([]byte{'N', 'M', byte(5 + len(name)), 1, flags}, name...)
}

// ceEntry is a SUSP CE entry, its fields both-endian.
func ceEntry(block, off, n uint32) []byte {
	b := []byte{'C', 'E', 28, 1}
	for _, v := range []uint32{block, off, n} {
		b = binary.LittleEndian.AppendUint32(b, v)
		b = binary.BigEndian.AppendUint32(b, v)
	}
	return b
}

func TestNMName(t *testing.T) {
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	img := make([]byte, 4*sectorSize)
	// Block 1: a chain of two continuation areas holding the rest of a name.
	area2 := cat(nmEntry(0, "-end"), []byte("ST\x04\x01"), nmEntry(0, "ignored"))
	area1 := cat(nmEntry(1, "-middle"), ceEntry(1, 512, uint32(len(area2))))
	copy(img[sectorSize:], area1)
	copy(img[sectorSize+512:], area2)
	// Block 2: an area that leads back to itself.
	loop := cat(nmEntry(1, "x"), ceEntry(2, 0, 28+6))
	copy(img[2*sectorSize:], loop)
	// Block 3, the last, cut short: an area past its end.
	img = img[:3*sectorSize+100]

	tests := []struct {
		name      string
		sua       []byte
		want      string
		first     string
		relocated bool
	}{
		{"one entry", nmEntry(0, "name.txt"), "name.txt", "name.txt", false},
		{"parts in one area", cat(nmEntry(1, "a"), []byte("PX\x05\x01\x00"), nmEntry(1, "b"), nmEntry(0, "c")), "abc", "a", false},
		{"parts in two continuation areas", cat(nmEntry(1, "start"), ceEntry(1, 0, uint32(len(area1)))), "start-middle-end", "start", false},
		{"CE before the NM", cat(ceEntry(1, 0, uint32(len(area1))), nmEntry(1, "start")), "start-middle-end", "start", false},
		{"continue with no next part", nmEntry(1, "cut"), "", "cut", false},
		{"continuation loop", cat(nmEntry(1, "y"), ceEntry(2, 0, uint32(len(loop)))), "", "y", false},
		{"CE past the end", cat(nmEntry(1, "y"), ceEntry(3, 0, 200)), "", "y", false},
		{"CE far past the end", cat(nmEntry(1, "y"), ceEntry(0xffffffff, 0xffffffff, 0xffffffff)), "", "y", false},
		{"CE across a block", cat(nmEntry(1, "y"), ceEntry(1, 2040, 16)), "", "y", false},
		{"CE cut short", cat(nmEntry(1, "y"), []byte("CE\x0c\x01"), make([]byte, 8)), "", "y", false},
		{"current", nmEntry(nmCurrent, ""), "", "", false},
		{"parent in a later part", cat(nmEntry(1, "a"), nmEntry(nmParent, "")), "", "a", false},
		{"entry length past the area", cat(nmEntry(0, "ok"), []byte("NM\xff\x01\x00")), "ok", "ok", false},
		{"entry length under 4", cat([]byte("XX\x02\x01"), nmEntry(0, "never")), "", "", false},
		{"NM without flags", []byte("NM\x04\x01"), "", "", false},
		{"relocated", cat(nmEntry(0, "dir"), []byte("RE\x04\x01")), "", "", true},
		{"too long", cat(bytes.Repeat(nmEntry(1, strings.Repeat("n", 250)), 5), nmEntry(0, "n")), "", strings.Repeat("n", 250), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newSUSPReader(bytes.NewReader(img), int64(len(img)))
			got, relocated := r.nmName(tc.sua)
			if got.name != tc.want || got.first != tc.first || relocated != tc.relocated {
				t.Errorf("nmName = %q (first %q), relocated %v; want %q (first %q), %v",
					got.name, got.first, relocated, tc.want, tc.first, tc.relocated)
			}
			if used := maxCEAreas - r.areas; used > maxContinuations {
				t.Errorf("followed %d continuation areas for one record", used)
			}
		})
	}

	t.Run("medium-wide budget", func(t *testing.T) {
		r := newSUSPReader(bytes.NewReader(img), int64(len(img)))
		sua := cat(nmEntry(1, "start"), ceEntry(1, 0, uint32(len(area1))))
		for range maxCEAreas / 2 {
			if got, _ := r.nmName(sua); got.name != "start-middle-end" {
				t.Fatalf("nmName = %q before the budget was spent", got.name)
			}
		}
		if got, _ := r.nmName(sua); got.name != "" {
			t.Errorf("nmName = %q after the budget was spent, want \"\"", got.name)
		}
	})
}

// suaRanges lists the byte ranges of image holding System Use data of the
// records of the directory at location (length bytes) and of the
// continuation areas they point to.
func suaRanges(t *testing.T, image []byte, location, length uint32) [][2]int {
	t.Helper()
	var out [][2]int
	start := int(location) * sectorSize
	b := image[start : start+int(length)]
	for i := 0; i < len(b); {
		if b[i] == 0 {
			i = (i/sectorSize + 1) * sectorSize
			continue
		}
		rec, n, err := parseDirRecord(b[i:])
		if err != nil {
			t.Fatal(err)
		}
		from := i + 33 + len(rec.name)
		if len(rec.name)%2 == 0 {
			from++
		}
		out = append(out, [2]int{start + from, start + i + n})
		for sua := b[from : i+n]; len(sua) >= 4 && sua[2] >= 4 && int(sua[2]) <= len(sua); sua = sua[sua[2]:] {
			if string(sua[:2]) == "CE" && sua[2] == 28 {
				at := int(binary.LittleEndian.Uint32(sua[4:]))*sectorSize + int(binary.LittleEndian.Uint32(sua[12:]))
				out = append(out, [2]int{at, at + int(binary.LittleEndian.Uint32(sua[20:]))})
			}
		}
		i += n
	}
	return out
}

// TestRockRidgeSUACorruption damages the System Use bytes (and the
// continuation areas) of a real image with long names. Reading the names
// must never panic (it is called here outside the recover of listISO) nor
// read past the image; Open must give an error naming the image or a medium
// whose files read.
func TestRockRidgeSUACorruption(t *testing.T) {
	n := makeLongNames(t)
	files := map[string]string{
		ContextFile: "A='1'\n",
		n.long143:   "143\n",
		n.pairA:     "a\n",
		n.pairB:     "b\n",
		n.spaces:    "s\n",
		"short.txt": "short\n",
	}
	good, err := os.ReadFile(xorrisoISO(t, writeFiles(t, files), "CONTEXT", "-J", "-R"))
	if err != nil {
		t.Fatal(err)
	}
	ds, err := readDescriptors(bytes.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	root := ds.primaryRoot
	ranges := suaRanges(t, good, root.location, root.length)
	if len(ranges) < 2*len(files) {
		t.Fatalf("found %d System Use ranges, want records and continuation areas", len(ranges))
	}
	rng := rand.New(rand.NewPCG(11, 13))
	p := filepath.Join(t.TempDir(), "corrupt.iso")
	var failed, opened int
	for i := range 400 {
		img := bytes.Clone(good)
		for range 1 + rng.IntN(6) {
			r := ranges[rng.IntN(len(ranges))]
			if r[1] <= r[0] {
				continue
			}
			at := r[0] + rng.IntN(r[1]-r[0])
			if i%3 == 0 && at+4 <= r[1] { // large values hit CE block, offset and length
				binary.LittleEndian.PutUint32(img[at:], rng.Uint32()|0x80000000)
			} else {
				img[at] = byte(rng.Uint32())
			}
		}
		r := newSUSPReader(bytes.NewReader(img), int64(len(img)))
		names, _ := r.dirNames(root.location, root.length)
		for _, nm := range names {
			if len(nm.name) > maxNameLen {
				t.Fatalf("a name of %d bytes, over the limit of %d", len(nm.name), maxNameLen)
			}
		}
		if err := openDamaged(t, p, img); err != nil {
			failed++
			continue
		}
		opened++
	}
	t.Logf("%d damaged images rejected, %d opened", failed, opened)
}

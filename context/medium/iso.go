package medium

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
)

const (
	sectorSize      = 2048
	firstDescSector = 16  // the volume descriptor set starts after the 32 KiB system area
	maxDescriptors  = 64  // a sane bound on the descriptor set
	maxEntries      = 1e5 // files and directories; a context medium holds a handful
	maxDepth        = 64
)

// Volume descriptor types (ECMA-119 8.1.1).
const (
	descPrimary       = 1
	descSupplementary = 2
	descTerminator    = 255
)

var errNotISO = errors.New("not an ISO 9660 volume")

// primaryDescriptor is what the primary volume descriptor tells us.
type primaryDescriptor struct {
	label     string
	blockSize int64
	volume    int64 // bytes the volume claims to span
}

// parsePrimary checks that b (one 2 KiB sector) is an ISO 9660 primary volume
// descriptor and returns its label and size.
func parsePrimary(b []byte) (primaryDescriptor, error) {
	if len(b) < sectorSize || b[0] != descPrimary || string(b[1:6]) != "CD001" || b[6] != 1 {
		return primaryDescriptor{}, errNotISO
	}
	pd := primaryDescriptor{
		label:     strings.TrimRight(string(b[40:72]), " \x00"),
		blockSize: int64(binary.LittleEndian.Uint16(b[128:130])),
	}
	pd.volume = int64(binary.LittleEndian.Uint32(b[80:84])) * pd.blockSize
	return pd, nil
}

// readLabel reads the ISO 9660 volume label of the device or image at p with
// a single 2 KiB read. It is how Find looks at every block device.
func readLabel(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", unwrapPathError(err)
	}
	defer f.Close()
	b := make([]byte, sectorSize)
	if _, err := f.ReadAt(b, firstDescSector*sectorSize); err != nil {
		if errors.Is(err, io.EOF) {
			return "", errNotISO
		}
		return "", unwrapPathError(err)
	}
	pd, err := parsePrimary(b)
	return pd.label, err
}

// descriptorSet is what the volume descriptor set holds.
type descriptorSet struct {
	primary     primaryDescriptor
	primaryRoot dirRecord
	joliet      bool
	jolietRoot  dirRecord
}

// readDescriptors reads the volume descriptor set of img. Some writers put a
// boot record before the primary descriptor, so it is searched for.
func readDescriptors(img io.ReaderAt) (descriptorSet, error) {
	var ds descriptorSet
	havePrimary := false
	b := make([]byte, sectorSize)
	for i := range int64(maxDescriptors) {
		n, err := img.ReadAt(b, (firstDescSector+i)*sectorSize)
		if n < sectorSize {
			switch {
			case err != nil && !errors.Is(err, io.EOF):
				return ds, fmt.Errorf("read volume descriptor %d: %w", i, unwrapPathError(err))
			case i == 0 && (n < 6 || string(b[1:6]) != "CD001"): // too small to hold any ISO 9660 volume
				return ds, errNotISO
			default:
				return ds, errors.New("volume descriptor set cut short: medium truncated")
			}
		}
		if string(b[1:6]) != "CD001" {
			if i == 0 {
				return ds, errNotISO
			}
			return ds, fmt.Errorf("volume descriptor %d is corrupt", i)
		}
		switch b[0] {
		case descPrimary:
			if !havePrimary {
				pd, err := parsePrimary(b)
				if err != nil {
					return ds, err
				}
				root, _, err := parseDirRecord(b[156:190])
				if err != nil {
					return ds, fmt.Errorf("primary volume descriptor: root %w", err)
				}
				ds.primary, ds.primaryRoot, havePrimary = pd, root, true
			}
		case descSupplementary:
			// Joliet is marked by a UCS-2 escape sequence: %/@, %/C or %/E.
			esc := b[88:120]
			if !ds.joliet && (bytes.Contains(esc, []byte("%/@")) || bytes.Contains(esc, []byte("%/C")) || bytes.Contains(esc, []byte("%/E"))) {
				root, _, err := parseDirRecord(b[156:190])
				if err != nil {
					return ds, fmt.Errorf("joliet volume descriptor: root %w", err)
				}
				ds.joliet, ds.jolietRoot = true, root
			}
		case descTerminator:
			if !havePrimary {
				return ds, errors.New("no primary volume descriptor: not an ISO 9660 volume")
			}
			return ds, nil
		}
	}
	return ds, fmt.Errorf("no volume descriptor set terminator in the first %d descriptors", maxDescriptors)
}

// openISO opens the ISO 9660 image or block device p and lists its tree.
func openISO(p string, kind Kind) (*Medium, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("medium %s: %w", p, unwrapPathError(err))
	}
	m, err := readISO(f, p, kind)
	if err != nil {
		f.Close()
		return nil, err
	}
	m.closer = f
	return m, nil
}

func readISO(f *os.File, p string, kind Kind) (*Medium, error) {
	// Stat gives 0 for a block device; its end gives the size of both.
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("medium %s: size: %w", p, unwrapPathError(err))
	}
	ds, err := readDescriptors(f)
	if err != nil {
		return nil, fmt.Errorf("medium %s: %w", p, err)
	}
	if ds.primary.blockSize != sectorSize {
		return nil, fmt.Errorf("medium %s: logical block size %d is not supported (only %d)", p, ds.primary.blockSize, sectorSize)
	}
	// Writers may leave the last block short (go-diskfs does), so only a
	// shortfall of a whole block or more means the medium was cut.
	if ds.primary.volume-size >= sectorSize {
		return nil, fmt.Errorf("medium %s: volume is %d bytes but only %d are present: medium truncated", p, ds.primary.volume, size)
	}
	m := &Medium{
		path:    p,
		kind:    kind,
		label:   ds.primary.label,
		entries: map[string]entry{},
		image:   f,
	}
	for _, root := range []dirRecord{ds.primaryRoot, ds.jolietRoot} {
		if root.length > maxDirExtent || int64(root.location)*sectorSize+int64(root.length) > size {
			return nil, fmt.Errorf("medium %s: root directory (block %d, %d bytes) lies past the end: medium corrupt or truncated", p, root.location, root.length)
		}
	}
	rockRidge, err := hasSUSP(f, ds.primaryRoot, size)
	if err != nil {
		return nil, fmt.Errorf("medium %s: %w", p, err)
	}
	if !rockRidge && ds.joliet {
		err = m.listJoliet(f, size, ds.jolietRoot)
	} else {
		err = m.listISO(f, size, ds.primaryRoot)
	}
	if err != nil {
		return nil, fmt.Errorf("medium %s: %w", p, err)
	}
	slices.Sort(m.files)
	slices.Sort(m.dirs)
	if _, _, ok := m.lookup(ContextFile); !ok {
		return nil, fmt.Errorf("medium %s: no %s", p, ContextFile)
	}
	return m, nil
}

// listISO walks the ISO tree (Rock Ridge or plain ISO 9660 names) with
// go-diskfs and records every file's place.
// go-diskfs trusts the on-disk structures and can panic on a corrupt image, so
// a panic is turned into an error here.
func (m *Medium) listISO(f *os.File, size int64, root dirRecord) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("corrupt ISO 9660 structures: %v", r)
		}
	}()
	isoFS, err := iso9660.Read(file.New(f, true), size, 0, sectorSize)
	if err != nil {
		return fmt.Errorf("read ISO 9660 file system: %w", err)
	}
	w := isoWalker{m: m, fs: isoFS, susp: newSUSPReader(f, size), size: size}
	if err := w.walk(".", "", root, 0); err != nil {
		return err
	}
	if !w.rockRidge {
		// Plain ISO 9660 names are upper case (CONTEXT.SH;1). Map them the way
		// Linux mounts such a volume (lower case, no ";1") and match any case.
		return m.lowerPlainNames()
	}
	return nil
}

type isoWalker struct {
	m         *Medium
	fs        *iso9660.FileSystem
	susp      *suspReader
	size      int64
	rockRidge bool
	count     int
}

// walk lists the ISO directory isoDir (go-diskfs path), whose own record is
// self, as medium path rel.
func (w *isoWalker) walk(isoDir, rel string, self dirRecord, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("directory %s: nested deeper than %d levels", rel, maxDepth)
	}
	des, err := w.fs.ReadDir(isoDir)
	if err != nil {
		return fmt.Errorf("read directory /%s: %w", rel, err)
	}
	rrNames, ok := w.susp.dirNames(self.location, self.length)
	if !ok || len(rrNames) != len(des) {
		rrNames = nil
	}
	// go-diskfs finds a directory by the first NM entry of its name: of two
	// names that share it, it reaches only the first.
	lookupNames := map[string]bool{}
	for i, de := range des {
		if w.count++; w.count > maxEntries {
			return fmt.Errorf("more than %d entries", int(maxEntries))
		}
		name := de.Name()
		lookupName := name
		if rrNames != nil {
			// Take the Rock Ridge name as written where go-diskfs trimmed
			// or cut it short, if the two lists line up.
			rr := rrNames[i]
			diskfsName := rr.first
			if !de.IsDir() {
				diskfsName = diskfsMangled(diskfsName)
			}
			if diskfsName == name {
				lookupName = rr.first
				if rr.name != "" {
					name = rr.name
				}
			}
		}
		shadowed := lookupNames[lookupName]
		lookupNames[lookupName] = true
		if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
			return fmt.Errorf("directory /%s: bad entry name %q", rel, name)
		}
		fi, err := de.Info()
		if err != nil {
			return fmt.Errorf("%s: %w", path.Join(rel, name), err)
		}
		st, _ := fi.Sys().(*iso9660.StatT)
		if st == nil {
			return fmt.Errorf("%s: no ISO 9660 metadata", path.Join(rel, name))
		}
		if st.RockRidge {
			w.rockRidge = true
		}
		childRel := path.Join(rel, name)
		if de.IsDir() {
			if shadowed {
				w.m.problem("directory %s left out: its name starts as an earlier entry's does, and go-diskfs cannot tell the two apart", childRel)
				continue
			}
			w.m.dirs = append(w.m.dirs, childRel)
			sub := dirRecord{location: st.Location, length: uint32(fi.Size())}
			if err := w.walk(path.Join(isoDir, de.Name()), childRel, sub, depth+1); err != nil {
				return err
			}
			continue
		}
		if !fi.Mode().IsRegular() { // Rock Ridge symlinks and device nodes
			continue
		}
		off := int64(st.Location) * sectorSize
		if off+fi.Size() > w.size {
			return fmt.Errorf("%s: data at bytes %d-%d lies past the end (%d bytes): medium truncated", childRel, off, off+fi.Size(), w.size)
		}
		err = w.m.addFile(childRel, entry{
			size: fi.Size(),
			// Without Rock Ridge go-diskfs reports 0755 for everything, which says nothing.
			exec: st.RockRidge && fi.Mode().Perm()&0o100 != 0,
			off:  off,
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// lowerPlainNames renames plain ISO 9660 names to lower case and keeps a
// case-insensitive index. Names that differ only in case (which ISO 9660
// names should not) are duplicates, handled as addFile does.
func (m *Medium) lowerPlainNames() error {
	files, entries := m.files, m.entries
	m.files, m.entries = nil, make(map[string]entry, len(entries))
	m.folded = make(map[string]string, len(entries))
	for _, p := range files {
		lp := strings.ToLower(p)
		if err := m.addFile(lp, entries[p]); err != nil {
			return err
		}
		m.folded[lp] = lp
	}
	for i, d := range m.dirs {
		m.dirs[i] = strings.ToLower(d)
	}
	return nil
}

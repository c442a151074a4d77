package medium

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"unicode/utf16"
)

// go-diskfs v1.9.4 reads Joliet names only in the root directory: for a
// subdirectory it looks the Joliet path table up with an off-by-one parent
// index and then falls back to parsing the Joliet tree as if it held ASCII
// names. So an image with Joliet but no Rock Ridge (mkisofs -J) is walked
// here, with every record checked against the image bounds.

const maxDirExtent = 16 << 20 // no context medium has a directory this large

// dirRecord is the part of an ISO 9660 directory record (ECMA-119 9.1) we use.
type dirRecord struct {
	location uint32 // first block of the extent
	length   uint32 // bytes
	flags    byte
	name     []byte
}

const (
	flagDirectory  = 0x02
	flagMultiExent = 0x80
)

// parseDirRecord parses the record at the start of b.
func parseDirRecord(b []byte) (dirRecord, int, error) {
	n := int(b[0])
	if n < 34 || n > len(b) {
		return dirRecord{}, 0, fmt.Errorf("directory record of %d bytes with %d left", n, len(b))
	}
	nameLen := int(b[32])
	if 33+nameLen > n {
		return dirRecord{}, 0, fmt.Errorf("directory record of %d bytes holds a %d-byte name", n, nameLen)
	}
	return dirRecord{
		location: binary.LittleEndian.Uint32(b[2:6]),
		length:   binary.LittleEndian.Uint32(b[10:14]),
		flags:    b[25],
		name:     b[33 : 33+nameLen],
	}, n, nil
}

// hasSUSP reports whether the root directory's "." record starts with the
// SUSP "SP" entry, which is how Rock Ridge announces itself (SUSP 5.3).
func hasSUSP(img io.ReaderAt, root dirRecord, size int64) (bool, error) {
	off := int64(root.location) * sectorSize
	if off+34 > size {
		return false, errors.New("root directory lies past the end: medium truncated")
	}
	b := make([]byte, 255)
	n, err := img.ReadAt(b, off)
	if n < 34 {
		return false, fmt.Errorf("read root directory: %w", err)
	}
	rec, recLen, err := parseDirRecord(b[:n])
	if err != nil {
		return false, fmt.Errorf("root directory: %w", err)
	}
	su := 33 + len(rec.name)
	if su%2 == 1 {
		su++ // padding byte after an odd-length name
	}
	return recLen >= su+7 && string(b[su:su+2]) == "SP" && b[su+4] == 0xBE && b[su+5] == 0xEF, nil
}

// jolietName decodes a UCS-2 (big-endian) name and drops the ";1" version.
func jolietName(b []byte, isDir bool) (string, error) {
	if len(b)%2 != 0 {
		return "", fmt.Errorf("odd-length Joliet name (%d bytes)", len(b))
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.BigEndian.Uint16(b[2*i:])
	}
	name := string(utf16.Decode(u))
	if i := strings.LastIndexByte(name, ';'); !isDir && i >= 0 && isDigits(name[i+1:]) {
		name = name[:i]
	}
	return name, nil
}

type jolietWalker struct {
	m       *Medium
	img     io.ReaderAt
	size    int64
	count   int
	visited map[uint32]bool
}

// listJoliet walks the Joliet tree whose root record is root.
func (m *Medium) listJoliet(img io.ReaderAt, size int64, root dirRecord) error {
	w := jolietWalker{m: m, img: img, size: size, visited: map[uint32]bool{}}
	return w.walk(root, "", 0)
}

func (w *jolietWalker) walk(dir dirRecord, rel string, depth int) error {
	where := "/" + rel
	if depth > maxDepth {
		return fmt.Errorf("directory %s: nested deeper than %d levels", where, maxDepth)
	}
	if w.visited[dir.location] {
		return fmt.Errorf("directory %s: loops back to block %d", where, dir.location)
	}
	w.visited[dir.location] = true
	off := int64(dir.location) * sectorSize
	if dir.length > maxDirExtent {
		return fmt.Errorf("directory %s: claims %d bytes", where, dir.length)
	}
	if off+int64(dir.length) > w.size {
		return fmt.Errorf("directory %s: lies past the end: medium truncated", where)
	}
	b := make([]byte, dir.length)
	if _, err := w.img.ReadAt(b, off); err != nil {
		return fmt.Errorf("read directory %s: %w", where, unwrapPathError(err))
	}
	for i := 0; i < len(b); {
		if b[i] == 0 { // records never cross a block; the rest of this one is padding
			i = (i/sectorSize + 1) * sectorSize
			continue
		}
		rec, n, err := parseDirRecord(b[i:])
		if err != nil {
			return fmt.Errorf("directory %s at byte %d: %w", where, i, err)
		}
		i += n
		if len(rec.name) == 1 && (rec.name[0] == 0 || rec.name[0] == 1) {
			continue // "." and ".."
		}
		if w.count++; w.count > maxEntries {
			return fmt.Errorf("more than %d entries", int(maxEntries))
		}
		isDir := rec.flags&flagDirectory != 0
		name, err := jolietName(rec.name, isDir)
		if err != nil {
			return fmt.Errorf("directory %s: %w", where, err)
		}
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
			return fmt.Errorf("directory %s: bad entry name %q", where, name)
		}
		childRel := path.Join(rel, name)
		if isDir {
			w.m.dirs = append(w.m.dirs, childRel)
			if err := w.walk(rec, childRel, depth+1); err != nil {
				return err
			}
			continue
		}
		if rec.flags&flagMultiExent != 0 {
			return fmt.Errorf("%s: multi-extent files are not supported", childRel)
		}
		dataOff := int64(rec.location) * sectorSize
		if dataOff+int64(rec.length) > w.size {
			return fmt.Errorf("%s: data at bytes %d-%d lies past the end (%d bytes): medium truncated", childRel, dataOff, dataOff+int64(rec.length), w.size)
		}
		if err := w.m.addFile(childRel, entry{size: int64(rec.length), off: dataOff}); err != nil {
			return err
		}
	}
	return nil
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

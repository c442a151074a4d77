package medium

import (
	"encoding/binary"
	"io"
	"strings"
)

// go-diskfs v1.9.4 trims a leading ".", a trailing "." and a trailing ";1"
// from every file name, Rock Ridge names included, so ".bashrc" would come out
// as "bashrc". It also keeps only the first NM entry of a name, so a long name
// that the writer split over several NM entries (xorriso puts the rest in a
// SUSP continuation area once a name passes about 110 bytes) comes out cut
// short. The Rock Ridge NM names are therefore read again here from the
// directory's records, which go-diskfs lists in the same order.

// Limits on following SUSP continuation areas (CE entries), which an
// untrusted image could chain in a loop or point anywhere.
const (
	maxContinuations = 8       // continuation areas followed for one record
	maxCEAreas       = 1 << 14 // continuation areas followed for the whole medium
	maxNameLen       = 1024    // bytes of a joined NM name; Linux takes 255
)

// NM entry flags (RRIP 4.1.4).
const (
	nmContinue = 0x01 // the name goes on in the next NM entry
	nmCurrent  = 0x02 // the record is "."
	nmParent   = 0x04 // the record is ".."
)

// rrName is the Rock Ridge name of one directory record.
type rrName struct {
	name  string // the whole NM name; "" when it cannot be read whole
	first string // the text of the first NM entry: what go-diskfs takes for the name
}

// suspReader reads System Use areas of one image, following continuation
// areas within the medium-wide budget. It keeps the last block it read, as
// writers pack the continuation areas of a directory into a few blocks.
type suspReader struct {
	img   io.ReaderAt
	size  int64
	areas int // continuation areas that may still be followed
	block int64
	buf   []byte
}

func newSUSPReader(img io.ReaderAt, size int64) *suspReader {
	return &suspReader{img: img, size: size, areas: maxCEAreas, block: -1}
}

// dirNames returns the Rock Ridge name of every record in the directory
// extent at block location (length bytes), in record order, skipping "." and
// ".." and the records of relocated directories (RE), which go-diskfs hides
// too. It returns false if the extent cannot be read or parsed.
func (r *suspReader) dirNames(location, length uint32) ([]rrName, bool) {
	off := int64(location) * sectorSize
	if length > maxDirExtent || off+int64(length) > r.size {
		return nil, false
	}
	b := make([]byte, length)
	if _, err := r.img.ReadAt(b, off); err != nil {
		return nil, false
	}
	var names []rrName
	for i := 0; i < len(b); {
		if b[i] == 0 {
			i = (i/sectorSize + 1) * sectorSize
			continue
		}
		rec, n, err := parseDirRecord(b[i:])
		if err != nil {
			return nil, false
		}
		sua := b[i+33+len(rec.name) : i+n]
		if len(rec.name)%2 == 0 && len(sua) > 0 {
			sua = sua[1:] // padding after an even-length name
		}
		i += n
		if len(rec.name) == 1 && (rec.name[0] == 0 || rec.name[0] == 1) {
			continue
		}
		name, relocated := r.nmName(sua)
		if relocated {
			continue
		}
		names = append(names, name)
	}
	return names, true
}

// nmName joins the NM entries of the System Use field sua and of the
// continuation areas it leads to (SUSP 5.1), and says whether the record is
// marked relocated (RE). A name that is not whole (a CONTINUE flag with no
// next part, an unreadable continuation area), names "." or "..", or is
// longer than maxNameLen comes back as "".
func (r *suspReader) nmName(sua []byte) (rrName, bool) {
	var (
		res                      rrName
		name                     []byte
		haveFirst, complete, bad bool
	)
	area := sua
	for followed := 0; ; followed++ {
		var ce []byte
	entries:
		for len(area) >= 4 {
			l := int(area[2])
			if l < 4 || l > len(area) {
				break // corrupt: the rest of this area cannot be parsed
			}
			sig, data := string(area[:2]), area[4:l]
			area = area[l:]
			switch sig {
			case "RE":
				return rrName{}, true
			case "ST": // SUSP terminator: this area ends here
				break entries
			case "CE":
				if ce == nil { // one per area (SUSP 5.1); a second is ignored
					ce = data
				}
			case "NM":
				if !haveFirst {
					haveFirst = true
					if len(data) > 0 {
						res.first = string(data[1:])
					}
				}
				switch {
				case complete || bad: // a stray NM after a whole name changes nothing
				case len(data) < 1 || data[0]&(nmCurrent|nmParent) != 0:
					bad = true
				case len(name)+len(data)-1 > maxNameLen:
					bad = true
				default:
					name = append(name, data[1:]...)
					complete = data[0]&nmContinue == 0
				}
			}
		}
		// Areas are followed after a whole name too, for an RE, as
		// go-diskfs does.
		if ce == nil || followed >= maxContinuations {
			break
		}
		if area = r.continuation(ce); area == nil {
			break
		}
	}
	if complete && !bad {
		res.name = string(name)
	}
	return res, false
}

// continuation returns the continuation area a CE entry (data after the
// 4-byte header) points to, or nil if it is malformed, lies outside one
// block of the image, or the budget is spent. The slice is valid until the
// next call.
func (r *suspReader) continuation(ce []byte) []byte {
	if len(ce) < 24 || r.areas <= 0 {
		return nil
	}
	r.areas--
	// Each field is both-endian (ISO 9660 7.3.3); the little-endian half is read.
	block := int64(binary.LittleEndian.Uint32(ce[0:4]))
	off := int64(binary.LittleEndian.Uint32(ce[8:12]))
	n := int64(binary.LittleEndian.Uint32(ce[16:20]))
	start := block * sectorSize
	// Writers never let a continuation area cross a block (Linux refuses
	// one that does), and it must lie in the image.
	if off+n > sectorSize || start+off+n > r.size {
		return nil
	}
	if block != r.block {
		if r.buf == nil {
			r.buf = make([]byte, sectorSize)
		}
		b := r.buf[:min(sectorSize, r.size-start)]
		if got, _ := r.img.ReadAt(b, start); got < len(b) {
			r.block = -1
			return nil
		}
		r.buf, r.block = b, block
	}
	if off+n > int64(len(r.buf)) {
		return nil
	}
	return r.buf[off : off+n]
}

// diskfsMangled is what go-diskfs makes of a file name.
func diskfsMangled(name string) string {
	name = strings.TrimSuffix(name, ";1")
	name = strings.TrimSuffix(name, ".")
	return strings.TrimPrefix(name, ".")
}

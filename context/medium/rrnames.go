package medium

import (
	"io"
	"strings"
)

// go-diskfs v1.9.4 trims a leading ".", a trailing "." and a trailing ";1"
// from every file name, Rock Ridge names included, so ".bashrc" would come out
// as "bashrc". The Rock Ridge NM names are therefore read again here from the
// directory's records, which go-diskfs lists in the same order.

// rockRidgeNames returns the NM name of every record in the directory extent
// at block location (length bytes), in record order, skipping "." and "..".
// A name it cannot read whole (continued in a CE area) is "".
func rockRidgeNames(img io.ReaderAt, location, length uint32, size int64) ([]string, bool) {
	off := int64(location) * sectorSize
	if length > maxDirExtent || off+int64(length) > size {
		return nil, false
	}
	b := make([]byte, length)
	if _, err := img.ReadAt(b, off); err != nil {
		return nil, false
	}
	var names []string
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
		name, relocated := nmName(sua)
		if relocated {
			continue // go-diskfs hides relocated directories (RE) too
		}
		names = append(names, name)
	}
	return names, true
}

// nmName joins the NM entries of a system use area and says whether the
// record is marked relocated (RE).
func nmName(sua []byte) (string, bool) {
	var name strings.Builder
	complete := false
	for len(sua) >= 4 {
		l := int(sua[2])
		if l < 4 || l > len(sua) {
			break
		}
		sig, data := string(sua[:2]), sua[4:l]
		switch sig {
		case "RE":
			return "", true
		case "NM":
			if len(data) >= 1 && data[0]&0x06 == 0 { // not "." or ".."
				name.Write(data[1:])
				complete = data[0]&0x01 == 0
			}
		case "ST":
			sua = nil
			continue
		}
		sua = sua[l:]
	}
	if !complete {
		return "", false
	}
	return name.String(), false
}

// diskfsMangled is what go-diskfs makes of a file name.
func diskfsMangled(name string) string {
	name = strings.TrimSuffix(name, ";1")
	name = strings.TrimSuffix(name, ".")
	return strings.TrimPrefix(name, ".")
}

package settings

import (
	"path"
	"strings"
)

// Scripts are the user's code the agent runs in the network stage.
type Scripts struct {
	// Start is START_SCRIPT_BASE64 decoded, else START_SCRIPT with the
	// newline echo adds; nil when neither is set.
	Start     []byte
	StartFrom string
	// Init are INIT_SCRIPTS' base names, in order; init.sh when unset and
	// the medium has one.
	Init []string
	// Files are the image names FILES_DS put at the medium's root, as
	// written (not cut to a base name), so that the scripts step can refuse
	// one that is absolute or climbs out with "..".
	Files []string
}

func (b *builder) scripts(mediumFiles []string) Scripts {
	var s Scripts
	if v := b.get("START_SCRIPT_BASE64"); strings.TrimSpace(v) != "" {
		dec, err := decodeBase64(v)
		if err != nil {
			b.problem("START_SCRIPT_BASE64", "not valid base64; the start script is not run")
		} else {
			s.Start, s.StartFrom = dec, "START_SCRIPT_BASE64"
		}
	} else if v := b.get("START_SCRIPT"); strings.TrimSpace(v) != "" {
		s.Start, s.StartFrom = []byte(v+"\n"), "START_SCRIPT"
	}
	onMedium := map[string]bool{}
	for _, f := range mediumFiles {
		onMedium[f] = true
	}
	if v := strings.Fields(b.get("INIT_SCRIPTS")); len(v) > 0 {
		for _, n := range v {
			base := path.Base(n)
			if base == "." || base == ".." || base == "/" {
				b.problem("INIT_SCRIPTS", "%q is not a file name; left out", n)
				continue
			}
			s.Init = append(s.Init, base)
		}
	} else if onMedium["init.sh"] {
		s.Init = []string{"init.sh"}
	}
	s.Files = filesDS(b.get("FILES_DS"))
	return s
}

// filesDS reads the names out of oned's rewritten FILES_DS value,
// `<source path>:'<image name>' ...`. An image name may hold spaces and
// colons ('app config.conf', 'db:backup.tar'): the quotes delimit it.
func filesDS(v string) []string {
	var out []string
	for rest := v; ; {
		i := strings.Index(rest, ":'")
		if i < 0 {
			return out
		}
		rest = rest[i+2:]
		j := strings.IndexByte(rest, '\'')
		if j < 0 {
			return out
		}
		if name := rest[:j]; name != "" {
			out = append(out, name)
		}
		rest = rest[j+1:]
	}
}

// Role is the service role the VM plays (the project's role layer).
type Role struct {
	Name string // ROLE, lower-cased; "" when none
	// ServiceRole is ROLE_NAME, the OneFlow role of the VM, which service
	// templates copy into CONTEXT from the user template; "" when none.
	ServiceRole string
	// Parents are ROLE_PARENTS, the OneFlow roles this one waits for
	// (space-separated). OneGate leaves the service's "parents" out, so a
	// template that wants the wait passes them here.
	Parents []string
}

func (b *builder) role() Role {
	r := Role{Name: strings.ToLower(b.trimmed("ROLE")), ServiceRole: b.trimmed("ROLE_NAME")}
	if p := strings.Fields(b.get("ROLE_PARENTS")); len(p) > 0 {
		r.Parents = p
	}
	return r
}

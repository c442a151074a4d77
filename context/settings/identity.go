package settings

import (
	"encoding/base64"
	"path"
	"strings"

	"one-contextd/internal/lazyregexp"
	"one-contextd/secret"
)

// Identity is the hostname part of the context.
type Identity struct {
	// Hostname from SET_HOSTNAME, sanitised as one-context does; "" when unset.
	Hostname string
	// DNSHostname: take the name from the reverse DNS of the first IP.
	DNSHostname bool
	// EC2Hostname: ask the EC2 metadata service, else ip-a-b-c-d.
	EC2Hostname bool
}

// Domain is the part of Hostname after the first dot ("" when none), which
// one-context puts on resolv.conf's domain line.
func (id Identity) Domain() string {
	if i := strings.IndexByte(id.Hostname, '.'); i >= 0 {
		return strings.TrimSuffix(id.Hostname[i+1:], ".")
	}
	return ""
}

var badHostChar = lazyregexp.New(`[^-a-zA-Z0-9.]`)

func (b *builder) identity() Identity {
	var id Identity
	if raw := b.trimmed("SET_HOSTNAME"); raw != "" {
		name := strings.Trim(badHostChar.ReplaceAllString(raw, "-"), "-")
		if err := validHostname(name); err != "" {
			b.problem("SET_HOSTNAME", "%q is not a valid hostname: %s; the hostname is not changed", raw, err)
		} else {
			id.Hostname = name
		}
	}
	// one-context takes any non-empty DNS_HOSTNAME, even NO; we take NO at
	// its word (documented in README).
	if v := b.trimmed("DNS_HOSTNAME"); v != "" {
		id.DNSHostname = !strings.EqualFold(v, "NO") && !strings.EqualFold(v, "false")
	}
	id.EC2Hostname = strings.EqualFold(b.trimmed("EC2_HOSTNAME"), "YES")
	return id
}

func validHostname(name string) string {
	if name == "" {
		return "empty after removing characters outside [-a-zA-Z0-9.]"
	}
	if len(name) > 253 {
		return "longer than 253 characters"
	}
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		switch {
		case label == "":
			return "empty label"
		case len(label) > 63:
			return "a label longer than 63 characters"
		case label[0] == '-' || label[len(label)-1] == '-':
			return "a label starts or ends with '-'"
		}
	}
	return ""
}

// PasswordKind says how a password is set.
type PasswordKind int

// Password kinds.
const (
	NoPassword PasswordKind = iota
	ClearPassword
	CryptedPassword
)

// Password is the one password variable in effect.
type Password struct {
	Kind  PasswordKind
	Value secret.Value
	From  string // the variable it came from
}

// SSHKey is one line of SSH_PUBLIC_KEY or EC2_PUBLIC_KEY.
type SSHKey struct {
	Line     string // the key as given, trimmed
	From     string // variable
	Position int    // 1-based position among that variable's keys
}

// Users is the account part of the context: one user, as in one-context.
type Users struct {
	Name string // USERNAME, default root
	// NameInvalid: USERNAME is set but is not a user name the agent
	// accepts (Name keeps it as given). Nothing of the account part is
	// applied then: never root's password and keys in its place.
	NameInvalid   bool
	Shell         string // USERNAME_SHELL, default /bin/bash (used only when creating)
	Sudo          bool   // USERNAME_SUDO (legacy GRANT_SUDO), default YES; never for root
	Password      Password
	PasswordReset bool // USERNAME_PASSWORD_RESET=YES and no password given: lock it
	Keys          []SSHKey
	// Securetty: SECURETTY, nil when unset (the step picks the default from
	// the environment: YES in VMs, NO in containers).
	Securetty *bool
	// SecurettyInvalid: SECURETTY is neither YES nor NO; nothing is done.
	SecurettyInvalid bool
}

// ValidUserName reports whether n is a user name the agent accepts: the
// portable characters every distribution's useradd takes (letters, digits,
// '.', '_', '-'; RHEL's refuses more than Debian's), not starting with '.'
// or '-', at most 31 of them, and an optional trailing '$' (Samba machine
// accounts). An all-digit name is refused: tools take it for a UID.
// Written out rather than as a regular expression: bounded repetitions
// make a large program that every start of the binary would compile.
func ValidUserName(n string) bool {
	base := strings.TrimSuffix(n, "$")
	if base == "" || len(base) > 31 || strings.Trim(base, "0123456789") == "" {
		return false
	}
	for i := 0; i < len(base); i++ {
		if c := base[i]; !wordChar(c) && (i == 0 || (c != '.' && c != '-')) {
			return false
		}
	}
	return true
}

// wordChar reports an ASCII letter, digit or '_'.
func wordChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// cryptRe accepts the crypt(3) forms shadow files hold: $id$[params$]salt$hash,
// 13-character DES, and the locked forms "*" and "!...".
var cryptRe = lazyregexp.New(`^(\$[0-9a-z]+(\$[^$:\s]+)+|[./0-9A-Za-z]{13}|\*|![^:\s]*)$`)

func (b *builder) users() Users {
	u := Users{Name: "root", Shell: "/bin/bash", Sudo: true}
	if n := b.trimmed("USERNAME"); n != "" {
		u.Name = n
		if !ValidUserName(n) {
			u.NameInvalid = true
			b.problem("USERNAME", "%q is not a valid user name (letters, digits, '.', '_' and '-', not starting with '.' or '-', not only digits, at most 32 characters); no user, password, sudo rule or SSH key is set", n)
		}
	}
	if s := b.trimmed("USERNAME_SHELL"); s != "" {
		if !path.IsAbs(s) || strings.ContainsAny(s, ": \t") {
			b.problem("USERNAME_SHELL", "%q is not an absolute path to a shell; using /bin/bash", s)
		} else {
			u.Shell = s
		}
	}
	sudoVar := "USERNAME_SUDO"
	if b.trimmed(sudoVar) == "" && b.trimmed("GRANT_SUDO") != "" {
		sudoVar = "GRANT_SUDO"
	}
	u.Sudo = b.yes(sudoVar, true) && u.Name != "root" && !u.NameInvalid
	u.Password = b.password()
	if u.Password.Kind == NoPassword {
		u.PasswordReset = b.yes("USERNAME_PASSWORD_RESET", false)
	}
	u.Keys = append(b.keys("SSH_PUBLIC_KEY"), b.keys("EC2_PUBLIC_KEY")...)
	if b.trimmed("SECURETTY") != "" {
		// one-context acts on YES and NO only; another value leaves
		// /etc/pam.d/login alone.
		if v, ok := b.yesNo("SECURETTY", true); ok {
			u.Securetty = &v
		} else {
			u.SecurettyInvalid = true
			b.problem("SECURETTY", "%q is neither YES nor NO; /etc/pam.d/login is left as it is", b.trimmed("SECURETTY"))
		}
	}
	return u
}

// password picks the first non-empty password variable in one-context's
// priority order. A value that cannot be used is a problem and the next
// variable is tried.
func (b *builder) password() Password {
	for _, c := range []struct {
		name    string
		kind    PasswordKind
		encoded bool
	}{
		{"CRYPTED_PASSWORD_BASE64", CryptedPassword, true},
		{"PASSWORD_BASE64", ClearPassword, true},
		{"CRYPTED_PASSWORD", CryptedPassword, false},
		{"PASSWORD", ClearPassword, false},
	} {
		v := b.get(c.name)
		if strings.TrimSpace(v) == "" {
			continue
		}
		if c.encoded {
			dec, err := decodeBase64(v)
			if err != nil {
				b.problem(c.name, "not valid base64; ignored")
				continue
			}
			v = string(dec)
		}
		if c.kind == CryptedPassword {
			v = strings.TrimSpace(v)
			if !cryptRe.MatchString(v) {
				b.problem(c.name, "not a crypt(3) hash (like $6$salt$hash); ignored")
				continue
			}
		} else {
			v = strings.TrimRight(v, "\n")
			if strings.ContainsAny(v, "\n\x00") {
				b.problem(c.name, "contains a newline or NUL, which chpasswd cannot take; ignored")
				continue
			}
		}
		return Password{Kind: c.kind, Value: secret.New(v), From: c.name}
	}
	return Password{}
}

// decodeBase64 decodes as `base64 -d` does after echo: whitespace anywhere
// is ignored, padding optional.
func decodeBase64(v string) ([]byte, error) {
	clean := strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, v)
	if dec, err := base64.StdEncoding.DecodeString(clean); err == nil {
		return dec, nil
	}
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(clean, "="))
}

func (b *builder) keys(name string) []SSHKey {
	var out []SSHKey
	pos := 0
	for _, l := range strings.Split(b.get(name), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		pos++
		out = append(out, SSHKey{Line: l, From: name, Position: pos})
	}
	return out
}

// System is the rest of the guest's settings.
type System struct {
	Timezone string // TIMEZONE, a name under /usr/share/zoneinfo; "" leaves it alone
	// Mount points to grow: "/" when GROW_ROOTFS (default YES), then
	// GROW_FS's, without duplicates.
	Grow []string
}

var tzRe = lazyregexp.New(`^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$`)

func (b *builder) system() System {
	var s System
	if tz := b.trimmed("TIMEZONE"); tz != "" {
		if !tzRe.MatchString(tz) || strings.Contains(tz, "..") {
			b.problem("TIMEZONE", "%q is not a time zone name (like Europe/Moscow); the time zone is not changed", tz)
		} else {
			s.Timezone = tz
		}
	}
	seen := map[string]bool{}
	if b.yes("GROW_ROOTFS", true) {
		s.Grow = append(s.Grow, "/")
		seen["/"] = true
	}
	for _, mp := range strings.Fields(b.get("GROW_FS")) {
		if !path.IsAbs(mp) {
			b.problem("GROW_FS", "%q is not an absolute mount point; left out", mp)
			continue
		}
		mp = path.Clean(mp)
		if !seen[mp] {
			seen[mp] = true
			s.Grow = append(s.Grow, mp)
		}
	}
	return s
}

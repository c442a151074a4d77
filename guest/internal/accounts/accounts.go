// Package accounts reads /etc/passwd and /etc/shadow under a root. It only
// reads: accounts are changed with the distribution's tools.
package accounts

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"one-contextd/fsroot"
)

// User is one /etc/passwd entry.
type User struct {
	Name     string
	UID, GID int
	Home     string
	Shell    string
}

// Lookup finds name in the root's /etc/passwd; ok is false when absent.
func Lookup(root *fsroot.Root, name string) (User, bool, error) {
	data, err := root.ReadFile("/etc/passwd")
	if errors.Is(err, fs.ErrNotExist) {
		return User{}, false, nil
	}
	if err != nil {
		return User{}, false, fmt.Errorf("read /etc/passwd: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) != 7 || f[0] != name {
			continue
		}
		uid, err1 := strconv.Atoi(f[2])
		gid, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil {
			return User{}, false, fmt.Errorf("/etc/passwd: %s: bad uid or gid", name)
		}
		return User{Name: f[0], UID: uid, GID: gid, Home: f[5], Shell: f[6]}, true, nil
	}
	return User{}, false, nil
}

// ShadowHash returns the password field of name in the root's /etc/shadow
// ("" with ok false when the user has no entry). The value stays in memory:
// callers compare it and never print it.
func ShadowHash(root *fsroot.Root, name string) (hash string, ok bool, err error) {
	data, err := root.ReadFile("/etc/shadow")
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read /etc/shadow: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) >= 2 && f[0] == name {
			return f[1], true, nil
		}
	}
	return "", false, nil
}

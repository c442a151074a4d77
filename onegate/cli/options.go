package cli

import (
	"fmt"
	"strings"
)

// flagSpec is one option of the reference command (Ruby OptionParser).
type flagSpec struct {
	short string
	long  string
	arg   bool
	set   func(o *options, v string)
}

var flagSpecs = []flagSpec{
	{"d", "data", true, func(o *options, v string) { o.data, o.updateType = v, 1 }},
	{"e", "erase", true, func(o *options, v string) { o.data, o.updateType = v, 2 }},
	{"r", "role", true, func(o *options, v string) { o.role, o.hasRole = v, true }},
	{"c", "cardinality", true, func(o *options, v string) { o.cardinality, o.hasCard = v, true }},
	{"j", "json", false, func(o *options, _ string) { o.json = true }},
	{"", "extended", false, func(o *options, _ string) { o.extended = true }},
	{"f", "hard", false, func(o *options, _ string) { o.hard = true }},
	{"h", "help", false, func(o *options, _ string) { o.help = true }},
}

// parseOptions reads flags anywhere on the line, as OptionParser#parse!
// does: -d DATA, -dDATA, --data DATA, --data=DATA, unique prefixes of long
// names (--card), clustered switches (-jf); "--" ends the options.
func parseOptions(args []string) (options, []string, error) {
	var o options
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return o, append(rest, args[i+1:]...), nil
		case strings.HasPrefix(a, "--"):
			name, val, hasVal := strings.Cut(a[2:], "=")
			spec, err := longFlag(name)
			if err != nil {
				return o, nil, err
			}
			if spec.arg && !hasVal {
				if i+1 >= len(args) {
					return o, nil, fmt.Errorf("missing argument: --%s", spec.long)
				}
				i++
				val = args[i]
			} else if !spec.arg && hasVal {
				return o, nil, fmt.Errorf("needless argument: --%s", spec.long)
			}
			spec.set(&o, val)
		case strings.HasPrefix(a, "-") && len(a) > 1:
			cluster := a[1:]
			for j := 0; j < len(cluster); j++ {
				spec, ok := shortFlag(cluster[j : j+1])
				if !ok {
					return o, nil, fmt.Errorf("invalid option: -%s", cluster[j:j+1])
				}
				if !spec.arg {
					spec.set(&o, "")
					continue
				}
				val := cluster[j+1:]
				if val == "" {
					if i+1 >= len(args) {
						return o, nil, fmt.Errorf("missing argument: -%s", spec.short)
					}
					i++
					val = args[i]
				}
				spec.set(&o, val)
				break
			}
		default:
			rest = append(rest, a)
		}
	}
	return o, rest, nil
}

func longFlag(name string) (flagSpec, error) {
	var found []flagSpec
	for _, s := range flagSpecs {
		if s.long == name {
			return s, nil
		}
		if name != "" && strings.HasPrefix(s.long, name) {
			found = append(found, s)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return flagSpec{}, fmt.Errorf("invalid option: --%s", name)
	default:
		return flagSpec{}, fmt.Errorf("ambiguous option: --%s", name)
	}
}

func shortFlag(c string) (flagSpec, bool) {
	for _, s := range flagSpecs {
		if s.short != "" && s.short == c {
			return s, true
		}
	}
	return flagSpec{}, false
}

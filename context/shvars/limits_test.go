package shvars

import (
	"fmt"
	"strings"
	"testing"
)

func TestVariableAndErrorLimits(t *testing.T) {
	var b strings.Builder
	for i := 0; i < MaxVariables+10; i++ {
		fmt.Fprintf(&b, "V%d='x'\n", i)
	}
	vars, errs := Parse("context.sh", []byte(b.String()))
	if vars.Len() != MaxVariables || len(errs) != 1 || !strings.Contains(errs[0].Error(), "the rest of the file is not read") ||
		errs[0].Line != MaxVariables+1 {
		t.Fatalf("%d vars, errors %v", vars.Len(), errs)
	}

	b.Reset()
	b.WriteString("GOOD='1'\n")
	for i := 0; i < MaxErrors+50; i++ {
		b.WriteString("whoami\n")
	}
	vars, errs = Parse("context.sh", []byte(b.String()))
	if len(errs) != MaxErrors+1 || !strings.Contains(errs[MaxErrors].Msg, "bad lines") || vars.Value("GOOD") != "1" {
		t.Fatalf("%d errors, last %v", len(errs), errs[len(errs)-1])
	}
}

package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestValueNeverFormatsClearText(t *testing.T) {
	v := New("hunter2-secret")
	for _, s := range []string{
		fmt.Sprint(v), fmt.Sprintf("%s %v %q %x %d %+v %#v", v, v, v, v, v, v, v),
		fmt.Sprintf("%v", struct{ P Value }{v}), fmt.Sprintf("%+v", &struct{ P Value }{v}),
	} {
		if bytes.Contains([]byte(s), []byte("hunter2")) {
			t.Errorf("formatted secret leaks: %q", s)
		}
	}
	j, _ := json.Marshal(map[string]any{"p": v, "s": struct{ P Value }{v}})
	if bytes.Contains(j, []byte("hunter2")) {
		t.Errorf("JSON leaks: %s", j)
	}
	if v.Reveal() != "hunter2-secret" {
		t.Errorf("Reveal = %q", v.Reveal())
	}
	if New("").String() != "" || !New("").IsZero() || v.IsZero() {
		t.Error("empty secret handling")
	}
}

func TestIsName(t *testing.T) {
	for name, want := range map[string]bool{
		"PASSWORD": true, "PASSWORD_BASE64": true, "CRYPTED_PASSWORD": true, "CRYPTED_PASSWORD_BASE64": true,
		"ONEGATE_TOKEN": true, "TOKENTXT": true, "REPLICATION_PASSWORD": true, "DB_PASSWORD": true,
		"APP_SECRET": true, "TLS_KEY": true, "TLS_KEY_BASE64": true, "db_password": true, "AWS_SECRET_ACCESS_KEY": true,
		"SSH_PUBLIC_KEY": false, "EC2_PUBLIC_KEY": false, "ONEAPP_SSH_PUBLIC_KEY": false, "TOKEN": false,
		"USERNAME": false, "ETH0_IP": false, "KEYBOARD": false, "PASSWORDLESS": false, "USERNAME_PASSWORD_RESET": false,
		"PASSWORD2": true, "CRYPTED_PASSWORD2": true, "PASSWORDS": true, "DB_PASSWORD1": true, "ETH10_TOKENS": true, "ETH0_MAC2": false,
	} {
		if got := IsName(name); got != want {
			t.Errorf("IsName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestScrubber(t *testing.T) {
	var s Scrubber
	s.Add(New("abc"), New("p@ss\"word\\x"), New("longsecretvalue"), New("secretval"))
	in := `short abc, json "p@ss\"word\\x", raw p@ss"word\x, nested longsecretvalue`
	out := s.Scrub(in)
	for _, leak := range []string{`p@ss\"word\\x`, `p@ss"word\x`, "longsecretvalue", "secretval"} {
		if bytes.Contains([]byte(out), []byte(leak)) {
			t.Errorf("scrubbed text still holds %q: %s", leak, out)
		}
	}
	if !bytes.Contains([]byte(out), []byte("short abc")) {
		t.Errorf("a 3-character value must not be scrubbed (too short to mean anything): %s", out)
	}
	var buf bytes.Buffer
	w := s.Writer(&buf)
	n, err := w.Write([]byte("x longsecretvalue y\n"))
	if err != nil || n != len("x longsecretvalue y\n") {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if buf.String() != "x "+Redacted+" y\n" {
		t.Errorf("writer output %q", buf.String())
	}
	var nilS *Scrubber
	if nilS.Scrub("a") != "a" {
		t.Error("nil scrubber must pass text through")
	}
}

// Every secret shape is scrubbed from what the logger actually writes:
// zerolog keeps <, > and & as they are, encoding/json escapes them.
func TestScrubberCatchesTheLoggersEscaping(t *testing.T) {
	secrets := []string{`Pa\ss&w0rd`, `a"b<c>d`, "tab\there&", "line\nbreak<", "plain&pass", `back\slash`, "ünï&cödé"}
	var s Scrubber
	for _, v := range secrets {
		s.Add(New(v))
	}
	var buf bytes.Buffer
	log := zerolog.New(s.Writer(&buf))
	for _, v := range secrets {
		log.Error().Str("detail", "failed with "+v).Msg("x " + v)
		rec, _ := json.Marshal(map[string]string{"error": "step: " + v})
		buf.WriteString(s.Scrub(string(rec)) + "\n")
	}
	for _, v := range secrets {
		plain, _ := json.Marshal(v)
		for _, leak := range []string{v, string(plain[1 : len(plain)-1])} {
			if bytes.Contains(buf.Bytes(), []byte(leak)) {
				t.Errorf("%q leaked as %q:\n%s", v, leak, buf.String())
			}
		}
		if strings.Contains(buf.String(), strings.ReplaceAll(v, `\`, `\\`)) {
			t.Errorf("%q leaked with zerolog's escaping:\n%s", v, buf.String())
		}
	}
	if n := strings.Count(buf.String(), Redacted); n != 3*len(secrets) {
		t.Errorf("%d redactions, want %d:\n%s", n, 3*len(secrets), buf.String())
	}
}

// A Value in an unexported field is printed by fmt without its methods:
// what it shows must not be the secret.
func TestValueInAnUnexportedFieldStaysHidden(t *testing.T) {
	holder := struct {
		name  string
		token Value
	}{"gate", New("hunter22-token")}
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		if out := fmt.Sprintf(f, holder); strings.Contains(out, "hunter22") {
			t.Errorf("%s prints the secret: %s", f, out)
		}
	}
	if New("").Reveal() != "" || !New("").IsZero() || (Value{}).Reveal() != "" || New("x").Reveal() != "x" {
		t.Error("zero and clear values")
	}
}

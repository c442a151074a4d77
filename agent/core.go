package agent

// The steps every stage starts with (find and read the medium, parse,
// compare with the last applied context), the agent's own files, and
// remembering what was applied.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"one-contextd/context/medium"
	"one-contextd/context/settings"
	"one-contextd/context/shvars"
	"one-contextd/engine"
	"one-contextd/fsroot"
	"one-contextd/secret"
	"one-contextd/state"
)

// EnvFile is the one-context-compatible environment file the onegate
// command and scripts read: the OneGate endpoint, VM id and token plus
// every context variable, in single-quoted form that is read back without
// a shell (one-context's double-quoted file ran $(...) on sourcing). It
// holds the token, so it is root-only and lives in tmpfs.
const EnvFile = RuntimeDir + "/one_env"

// referencedFileLimit bounds how much of one referenced file is read for
// the change digest; larger files are fingerprinted by name and size.
const referencedFileLimit = 16 << 20

// readMedium finds or opens the context source and reads context.sh.
func (s *session) readMedium(ctx context.Context, r *engine.Recorder) error {
	var m *medium.Medium
	var err error
	if s.opt.Source != "" {
		m, err = medium.Open(s.opt.Source)
	} else {
		m, err = medium.Find(ctx, s.opt.Find)
	}
	if err != nil {
		return err
	}
	s.medium = m
	r.Note("context medium %s (%s%s), %d files", m.Path(), m.Kind(), labelSuffix(m.Label()), len(m.Files()))
	for _, p := range m.Problems() {
		r.Problem("", "%s", p)
	}
	raw, err := m.ReadFile(medium.ContextFile, shvars.MaxFileSize)
	if err != nil {
		return fmt.Errorf("read %s: %w", medium.ContextFile, err)
	}
	s.raw = raw
	return nil
}

func labelSuffix(l string) string {
	if l == "" {
		return ""
	}
	return ", label " + l
}

// parseContext parses context.sh and builds the typed settings. Bad lines
// and bad values are problems, not a failure: the rest is still applied.
func (s *session) parseContext(_ context.Context, r *engine.Recorder) error {
	vars, perrs := shvars.Parse(medium.ContextFile, s.raw)
	for _, e := range perrs {
		r.Problem(e.Name, "%s", e.Error())
	}
	var token []byte
	if s.medium.Has("token.txt") {
		t, err := s.medium.ReadFile("token.txt", 64<<10)
		if err != nil {
			r.Problem("", "token.txt: %v", err)
		} else {
			token = t
			s.token = t
		}
	}
	c := settings.Build(vars, settings.Inputs{File: medium.ContextFile, TokenFile: token, MediumFiles: s.medium.Files()})
	s.vars, s.ctx = vars, c
	// Register every secret before anything else is logged, so the
	// scrubber stands in front of every writer from now on.
	for _, v := range vars.List() {
		if secret.IsName(v.Name) {
			s.opt.Scrubber.Add(secret.New(v.Value))
		}
	}
	s.opt.Scrubber.Add(c.OneGate.Token, c.Users.Password.Value)
	for _, p := range c.Problems {
		r.Problem(p.Var, "%s", p.String())
	}
	r.Note("%d variables, %d NICs, %d problems", vars.Len(), len(c.Network.NICs), len(perrs)+len(c.Problems))
	if vars.Len() == 0 && len(perrs) > 0 {
		return fmt.Errorf("%s: no usable variable (%d errors)", medium.ContextFile, len(perrs))
	}
	s.rec.VMID = c.OneGate.VMID
	return nil
}

// compareState classifies the context against the last applied one.
func (s *session) compareState(_ context.Context, r *engine.Recorder) error {
	files := map[string][]byte{medium.ContextFile: s.raw}
	if s.token != nil {
		files["token.txt"] = s.token // read once, by parseContext
	}
	refs := append(append([]string(nil), s.ctx.Scripts.Init...), s.ctx.Scripts.Files...)
	for _, name := range refs {
		if _, done := files[name]; done || !s.medium.Has(name) {
			continue
		}
		data, err := s.medium.ReadFile(name, referencedFileLimit)
		if err != nil {
			size, _ := s.medium.Size(name)
			data = []byte(fmt.Sprintf("size:%d", size))
		}
		files[name] = data
	}
	s.applied = state.Fingerprint(s.ctx.OneGate.VMID, files)
	last, err := state.LoadApplied(s.opt.Root)
	if err != nil {
		r.Problem("", "%v", err)
	}
	change, diff := state.Compare(last, s.applied)
	s.change = change
	s.rec.Context = string(change)
	s.rec.ContextDigest = s.applied.Digest
	ev := r.Log.Info().Str("event", "context-change").Str("context", string(change)).Str("digest", s.applied.Digest)
	switch change {
	case state.FirstBoot:
		ev.Msg("first boot of this VM: everything is applied")
	case state.Unchanged:
		ev.Msg("context unchanged since the last run: every step checks, nothing should change")
	case state.Changed:
		ev.Strs("files", diff).Msg("context changed since the last run: " + strings.Join(diff, ", "))
	}
	return nil
}

// writeEnvFile writes the environment file for onegate and scripts.
func (s *session) writeEnvFile(_ context.Context, r *engine.Recorder) error {
	g := s.ctx.OneGate
	var vars []shvars.Var
	if g.Endpoint != nil {
		vars = append(vars, shvars.Var{Name: "ONEGATE_ENDPOINT", Value: g.Endpoint.String()})
	}
	if g.VMID != "" {
		vars = append(vars, shvars.Var{Name: "VMID", Value: g.VMID})
	}
	if !g.Token.IsZero() {
		vars = append(vars, shvars.Var{Name: "TOKENTXT", Value: g.Token.Reveal()})
		if !s.vars.Has("ONEGATE_TOKEN") {
			vars = append(vars, shvars.Var{Name: "ONEGATE_TOKEN", Value: g.Token.Reveal()})
		}
	}
	vars = append(vars, s.vars.List()...)
	changed, err := s.opt.Root.WriteFile(EnvFile, shvars.Format(vars),
		fsroot.WriteOptions{Mode: 0o400, ForceMode: true, UID: 0, GID: 0, ForceOwner: true, DirMode: 0o700})
	if err != nil {
		return err
	}
	if changed {
		r.Change("wrote %s (%d variables)", EnvFile, len(vars))
	}
	return nil
}

// saveState remembers the applied context for the next run.
func (s *session) saveState(_ context.Context, r *engine.Recorder) error {
	if s.change == state.Unchanged {
		return nil // keep the first time it was applied
	}
	s.applied.AppliedAt = s.opt.Clock()
	if err := state.SaveApplied(s.opt.Root, s.applied); err != nil {
		return err
	}
	r.Note("remembered context %s", s.applied.Digest)
	return nil
}

// mediumDir is where the medium's tree is copied for scripts (there is no
// mount to point them at).
func mediumDir() string { return path.Join(RuntimeDir, "medium") }

// copyMedium copies the medium's files for scripts, once per run. A boot
// with nothing to run from the medium (no script, no FILES_DS, no role)
// copies nothing: FILES_DS images can be large, and the copy is in tmpfs.
func (s *session) copyMedium(_ context.Context, r *engine.Recorder) error {
	sc := s.ctx.Scripts
	if len(sc.Start) == 0 && len(sc.Init) == 0 && len(sc.Files) == 0 && s.ctx.Role.Name == "" && s.ctx.Role.ServiceRole == "" && !s.ctx.OneGate.Usable() {
		return engine.Skip("nothing on the medium to run")
	}
	dir := mediumDir()
	// The roles timer runs every minute: the copy the network stage made of
	// the same context is used again rather than copied anew into tmpfs
	// (FILES_DS images can be large).
	if s.opt.Stage == StageRoles && s.applied.Digest != "" {
		if stamp, err := s.opt.Root.ReadFile(mediumStamp()); err == nil && string(stamp) == s.applied.Digest {
			if fi, err := s.opt.Root.Fs().Stat(dir); err == nil && fi.IsDir() {
				return engine.Skip("the medium's files are in " + dir + " already (same context)")
			}
		}
	}
	if _, err := s.opt.Root.Remove(mediumStamp()); err != nil {
		return err
	}
	// The copy holds token.txt: its parent stays root-only.
	if err := s.opt.Root.Fs().MkdirAll(RuntimeDir, 0o700); err != nil {
		return err
	}
	if err := s.opt.Root.Fs().Chmod(RuntimeDir, 0o700); err != nil {
		return err
	}
	if _, err := s.opt.Root.Fs().Stat(dir); err == nil {
		if err := s.opt.Root.Fs().RemoveAll(dir); err != nil {
			return fmt.Errorf("clear %s: %w", dir, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := s.medium.CopyTo(s.opt.Root.Fs(), dir); err != nil {
		return err
	}
	r.Note("medium files copied to %s", dir)
	if s.applied.Digest != "" {
		if _, err := s.opt.Root.WriteFile(mediumStamp(), []byte(s.applied.Digest), fsroot.WriteOptions{Mode: 0o600}); err != nil {
			return err
		}
	}
	return nil
}

// mediumStamp holds the digest of the context whose medium mediumDir holds.
func mediumStamp() string { return path.Join(RuntimeDir, "medium.digest") }

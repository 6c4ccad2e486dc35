package recording

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestListFind(t *testing.T) {
	r, clk := newRecorder(t, Config{})
	start := func(session, channel string) {
		t.Helper()
		sm := sshMeta()
		sm.Session, sm.Channel = session, channel
		c, err := r.StartSSH(sm)
		if err != nil {
			t.Fatal(err)
		}
		c.Output([]byte("x"))
		if _, err := c.Close("exit"); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Hour)
	}
	start("s1", "0")
	start("s1", "1")
	start("s10", "0")
	start("s1-2", "0")
	pm := pgMeta()
	pm.Session = "s1"
	q, err := r.StartPostgres(pm) // still open
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close("test over")
	clk.Advance(24 * time.Hour)
	start("s1", "2") // the next day

	ids := func(ms []Meta) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.ID)
		}
		return out
	}
	tests := []struct {
		name    string
		session string // "" lists all
		want    []string
	}{
		{"all, newest first", "", []string{"s1-2", "s1", "s1-2-0", "s10-0", "s1-1", "s1-0"}},
		{"one session", "s1", []string{"s1-2", "s1", "s1-1", "s1-0"}},
		{"dashed session", "s1-2", []string{"s1-2-0"}},
		{"prefix of another", "s10", []string{"s10-0"}},
		{"none", "s2", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ms []Meta
			var err error
			if tt.session == "" {
				ms, err = List(r.dir)
			} else {
				ms, err = Find(r.dir, tt.session)
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(ms); !slices.Equal(got, tt.want) {
				t.Errorf("got %v; want %v", got, tt.want)
			}
			for _, m := range ms {
				if _, err := os.Stat(m.Path); err != nil {
					t.Errorf("%s: path %s: %v", m.ID, m.Path, err)
				}
			}
		})
	}

	// A damaged sidecar does not hide the others.
	bad := filepath.Join(r.dir, "2026", "11", "29", "junk.cast"+sidecarSuffix)
	if err := os.WriteFile(bad, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	ms, err := List(r.dir)
	if err == nil || len(ms) != 6 {
		t.Errorf("with a damaged sidecar: got %d recordings, error %v; want 6 and an error", len(ms), err)
	}
	if _, err := Find(r.dir, "../etc"); err == nil {
		t.Error("Find with a path for a session: got no error; want one")
	}
	if _, err := List(filepath.Join(r.dir, "missing")); err == nil {
		t.Error("List of a missing dir: got no error; want one")
	}
}

func TestVerifyFile(t *testing.T) {
	r, _ := newRecorder(t, Config{})
	c := startCast(t, r)
	c.Output([]byte("x"))
	open := c.Meta()
	m, err := c.Close("exit")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		meta func() Meta
		want error // nil means no error
	}{
		{"sealed", func() Meta { return m }, nil},
		{"open", func() Meta { return open }, ErrNotSealed},
		{"wrong hash", func() Meta { x := m; x.SHA256 = "00" + x.SHA256[2:]; return x }, ErrMismatch},
		{"wrong size", func() Meta { x := m; x.Bytes++; return x }, ErrMismatch},
		{"missing file", func() Meta { x := m; x.Path += ".gone"; return x }, os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyFile(tt.meta())
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("got %v; want %v", err, tt.want)
			}
		})
	}
}

package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitproxy/jitproxy/recording"
)

// TestRecordingsExport exports recordings stored compressed and plain:
// the output is the plain asciicast, byte for byte, and a file changed
// after its seal is refused.
func TestRecordingsExport(t *testing.T) {
	for _, comp := range []recording.Compression{recording.CompressionZstd, recording.CompressionNone} {
		t.Run(string(comp), func(t *testing.T) {
			dir := t.TempDir()
			rec, err := recording.New(recording.Config{Dir: dir, Compression: comp})
			if err != nil {
				t.Fatal(err)
			}
			c, err := rec.StartSSH(recording.SSHMeta{Session: "s1", Channel: "0", Person: "alice@example.com", Login: "ubuntu", Target: "web-1"})
			if err != nil {
				t.Fatal(err)
			}
			c.Output([]byte("$ echo hi\r\nhi\r\n\x00\x00"))
			m, err := c.Close("exit 0")
			if err != nil {
				t.Fatal(err)
			}
			f, err := recording.Open(m.Path)
			if err != nil {
				t.Fatal(err)
			}
			var want bytes.Buffer
			want.ReadFrom(f)
			f.Close()
			if !strings.Contains(want.String(), `"$ echo hi\r\nhi\r\n\u0000\u0000"`) {
				t.Fatalf("the plain recording lacks the output: %q", want.String())
			}

			export := func(args ...string) (string, string, error) {
				root := newRootCmd()
				var out, errOut bytes.Buffer
				root.SetOut(&out)
				root.SetErr(&errOut)
				root.SetArgs(append([]string{"recordings", "export", "--dir", dir}, args...))
				err := root.Execute()
				return out.String(), errOut.String(), err
			}
			for _, id := range []string{"s1-0", "s1"} {
				got, _, err := export(id)
				if err != nil || got != want.String() {
					t.Errorf("export %s: got %q, %v; want the plain cast %q", id, got, err, want.String())
				}
			}
			to := filepath.Join(t.TempDir(), "x.cast")
			if _, _, err := export("s1-0", "-o", to); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(to); err != nil || string(b) != want.String() {
				t.Errorf("export -o: got %q, %v; want the plain cast", b, err)
			}
			if fi, err := os.Stat(to); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("export -o mode: %v, %v; want 0600", fi, err)
			}
			if _, _, err := export("s1-0", "-o", to); err == nil || !strings.Contains(err.Error(), "exists: remove it or name another file with -o") {
				t.Errorf("export -o onto an existing file: %v; want it refused, saying what to do", err)
			}
			if _, _, err := export("s2"); err == nil {
				t.Error("export of a missing recording: no error")
			}

			raw, err := os.ReadFile(m.Path)
			if err != nil {
				t.Fatal(err)
			}
			raw[len(raw)/2] ^= 1
			if err := os.WriteFile(m.Path, raw, 0o600); err != nil {
				t.Fatal(err)
			}
			got, _, err := export("s1-0")
			var ee *exitError
			if !errors.As(err, &ee) || !strings.Contains(ee.msg, "sealed hash") || got != "" {
				t.Errorf("export of a changed file: got %q, %v; want nothing and a hash mismatch", got, err)
			}
		})
	}
}

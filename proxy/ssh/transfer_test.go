package ssh

import (
	"crypto/rand"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestTransfer copies a 10 MiB file up and down with scp and sftp, through
// both ways in, and compares SHA-256s.
func TestTransfer(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.grant(e.login, time.Hour, false)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	data := make([]byte, 10<<20)
	rand.Read(data)
	writeFile(t, src, data, 0o644)
	want := sha256.Sum256(data)

	tests := []struct {
		name string
		jump bool
		up   func(local, remote string) (string, []string) // the command and its arguments
		down func(remote, local string) (string, []string)
	}{
		{"scp", false,
			func(l, r string) (string, []string) { return "scp", []string{"-q", l, e.login + "@web-1:" + r} },
			func(r, l string) (string, []string) { return "scp", []string{"-q", e.login + "@web-1:" + r, l} }},
		{"scp -J", true,
			func(l, r string) (string, []string) {
				return "scp", []string{"-q", "-J", e.jumpArg(), l, e.login + "@web-1:" + r}
			},
			func(r, l string) (string, []string) {
				return "scp", []string{"-q", "-J", e.jumpArg(), e.login + "@web-1:" + r, l}
			}},
		{"sftp", false,
			func(l, r string) (string, []string) {
				return "sftp", []string{"-q", "-b", batch(t, "put "+l+" "+r), e.login + "@web-1"}
			},
			func(r, l string) (string, []string) {
				return "sftp", []string{"-q", "-b", batch(t, "get "+r+" "+l), e.login + "@web-1"}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			remote := filepath.Join(t.TempDir(), "remote")
			back := filepath.Join(t.TempDir(), "back")
			name, args := tt.up(src, remote)
			if r := e.alice.run(tt.jump, name, args...); r.code != 0 {
				t.Fatalf("upload: exit %d, stderr %s", r.code, r.stderr)
			}
			if got := sha256.Sum256(readFile(t, remote)); got != want {
				t.Errorf("uploaded SHA-256 %x; want %x", got, want)
			}
			name, args = tt.down(remote, back)
			if r := e.alice.run(tt.jump, name, args...); r.code != 0 {
				t.Fatalf("download: exit %d, stderr %s", r.code, r.stderr)
			}
			if got := sha256.Sum256(readFile(t, back)); got != want {
				t.Errorf("downloaded SHA-256 %x; want %x", got, want)
			}
		})
	}
	// sftp (and scp, which speaks sftp since OpenSSH 9.0) runs as a
	// subsystem: a metadata-only recording, sealed like any other.
	rows := e.audit.find("recording.sealed", nil)
	if len(rows) < 6 {
		t.Fatalf("%d recordings sealed; want one for each of the 6 transfers", len(rows))
	}
	for _, r := range rows {
		if b, _ := r.fields["bytes"].(int64); b > 4096 {
			t.Errorf("recording %v is %d bytes; a subsystem's recording holds no data", r.fields["recording"], b)
		}
	}
}

// batch writes an sftp batch file.
func batch(t *testing.T, cmds ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "batch")
	var b []byte
	for _, c := range cmds {
		b = append(b, c+"\n"...)
	}
	writeFile(t, p, b, 0o644)
	return p
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

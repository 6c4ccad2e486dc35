package recording

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// TestCastAsciinemaCat has asciinema read our casts: a plain one as
// recorded, a compressed one as Open gives it (what `jitproxy recordings
// export` writes).
func TestCastAsciinemaCat(t *testing.T) {
	asciinema, err := exec.LookPath("asciinema")
	if err != nil {
		t.Skip("asciinema is not installed (apt-get install asciinema): skipping the check that a real player reads our casts")
	}
	for _, comp := range compressions {
		t.Run(string(comp), func(t *testing.T) { testAsciinemaCat(t, asciinema, comp) })
	}
}

func testAsciinemaCat(t *testing.T, asciinema string, comp Compression) {
	r, clk := newRecorder(t, Config{RecordInput: true, Compression: comp})
	c := startCast(t, r)
	writes := []string{"$ ", "echo \"caf\xc3", "\xa9\" \\ \xf0\x9f", "\x98\x80\r\n", "\x1b[1mbold\x1b[0m\ttab\r\n", "bad \xff byte\r\n"}
	var want strings.Builder
	for _, w := range writes {
		clk.Advance(10 * time.Millisecond)
		c.Input([]byte("x"))
		c.Output([]byte(w))
		want.WriteString(w)
	}
	c.Resize(90, 20)
	m, err := c.Close("exit")
	if err != nil {
		t.Fatal(err)
	}
	// asciinema cat puts /dev/tty in raw mode, so it needs a controlling
	// terminal; its output goes to a pipe, untouched by the terminal.
	ptm, pts, err := openPTY()
	if err != nil {
		t.Skipf("no pseudo-terminal to run asciinema cat in: %v", err)
	}
	defer ptm.Close()
	defer pts.Close()
	path := m.Path
	if comp != CompressionNone {
		path = filepath.Join(t.TempDir(), "export.cast")
		if err := os.WriteFile(path, readPlain(t, m.Path), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(asciinema, "cat", path)
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	cmd.Stdin = pts
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	got, err := cmd.Output()
	if err != nil {
		t.Fatalf("asciinema cat: %v: %s", err, stderr.Bytes())
	}
	if w := string([]rune(want.String())); string(got) != w {
		t.Errorf("asciinema cat: got %q; want %q", got, w)
	}
}

// openPTY opens a pseudo-terminal pair: the master and the slave.
func openPTY() (ptm, pts *os.File, err error) {
	ptm, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	var unlock int32
	var n uint32
	if err := ioctl(ptm, syscall.TIOCSPTLCK, unsafe.Pointer(&unlock)); err != nil {
		ptm.Close()
		return nil, nil, fmt.Errorf("unlock pty: %w", err)
	}
	if err := ioctl(ptm, syscall.TIOCGPTN, unsafe.Pointer(&n)); err != nil {
		ptm.Close()
		return nil, nil, fmt.Errorf("pty number: %w", err)
	}
	pts, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		ptm.Close()
		return nil, nil, err
	}
	return ptm, pts, nil
}

func ioctl(f *os.File, req uintptr, arg unsafe.Pointer) error {
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), req, uintptr(arg)); errno != 0 {
		return errno
	}
	return nil
}

package ssh

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

// TestSniff reads first lines that arrive in pieces, whole, or wrong.
func TestSniff(t *testing.T) {
	tests := []struct {
		name       string
		chunks     []string
		wantTarget string
		wantRest   string
		wantErr    error // nil, errBadPreamble or io.EOF
	}{
		{"ssh client", []string{"SSH-2.0-OpenSSH_9.2\r\n"}, "", "SSH-2.0-OpenSSH_9.2\r\n", nil},
		{"ssh client in pieces", []string{"S", "SH", "-2.0-x\r\n"}, "", "SSH-", nil},
		{"preamble", []string{"JITPROXY-TARGET web-1\r\n"}, "web-1", "", nil},
		{"preamble, LF only", []string{"JITPROXY-TARGET web-1\n"}, "web-1", "", nil},
		{"preamble and the SSH version together", []string{"JITPROXY-TARGET web-1\r\nSSH-2.0-x\r\n"}, "web-1", "SSH-2.0-x\r\n", nil},
		{"preamble in pieces", []string{"JITP", "ROXY-TARGET w", "eb-1\r", "\nSSH"}, "web-1", "SSH", nil},
		{"garbage", []string{"GET / HTTP/1.1\r\n"}, "", "", errBadPreamble},
		{"almost SSH", []string{"SS", "H_2.0\r\n"}, "", "", errBadPreamble},
		{"empty target", []string{"JITPROXY-TARGET \r\n"}, "", "", errBadPreamble},
		{"target with a space", []string{"JITPROXY-TARGET web 1\r\n"}, "", "", errBadPreamble},
		{"target with a control character", []string{"JITPROXY-TARGET web\x1b1\r\n"}, "", "", errBadPreamble},
		{"line too long", []string{PreambleTarget + strings.Repeat("w", MaxPreambleLine)}, "", "", errBadPreamble},
		{"closed at once", nil, "", "", io.EOF},
		{"closed mid-preamble", []string{"JITPROXY-TAR"}, "", "", io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := net.Pipe()
			go func() {
				for _, c := range tt.chunks {
					if _, err := io.WriteString(client, c); err != nil {
						return
					}
				}
				client.Close()
			}()
			defer server.Close()
			first, rest, err := sniff(server)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v; want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if first.target != tt.wantTarget {
				t.Errorf("target %q; want %q", first.target, tt.wantTarget)
			}
			// rest is what sniff had read past the first line: a prefix of
			// the stream's remainder.
			if !strings.HasPrefix(tt.wantRest, string(rest)) && !strings.HasPrefix(string(rest), tt.wantRest) {
				t.Errorf("rest %q; want %q", rest, tt.wantRest)
			}
		})
	}
}

// TestWritePreamble writes the line a ProxyCommand sends, and refuses
// names that cannot be targets.
func TestWritePreamble(t *testing.T) {
	tests := []struct {
		target  string
		want    string
		wantErr bool
	}{
		{"web-1", "JITPROXY-TARGET web-1\r\n", false},
		{"db.internal", "JITPROXY-TARGET db.internal\r\n", false},
		{"", "", true},
		{"web 1", "", true},
		{"web-1\r\nJITPROXY-TARGET web-2", "", true},
		{strings.Repeat("w", MaxPreambleLine), "", true},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		err := WritePreamble(&b, tt.target)
		if (err != nil) != tt.wantErr || b.String() != tt.want {
			t.Errorf("WritePreamble(%q): %q, %v; want %q, error %v", tt.target, b.String(), err, tt.want, tt.wantErr)
		}
	}
}

// TestProxyCommand runs the client side against a fake bastion: the
// preamble goes first, bytes flow both ways, and a refusal line becomes a
// RefusedError.
func TestProxyCommand(t *testing.T) {
	tests := []struct {
		name    string
		answer  string // what the bastion writes before closing
		wantOut string
		wantErr string // the RefusedError's reason; "" for none
	}{
		{"relays", "SSH-2.0-jitproxy\r\nbinary\x00stuff", "SSH-2.0-jitproxy\r\nbinary\x00stuff", ""},
		{"refused", PreambleError + "jitproxy is not an open relay: web-9 is not a jitproxy target\r\n", "", "jitproxy is not an open relay: web-9 is not a jitproxy target"},
		{"refused in pieces", "JITPROXY-ERR|OR jitproxy: no|\r\n", "", "jitproxy: no"},
		{"refusal without its line end", PreambleError + "jitproxy: gone", "", "jitproxy: gone"},
		{"closed at once", "", "", "jitproxy: the bastion closed the connection before the SSH handshake"},
		{"closed mid-refusal", "JITPROXY-ERR", "", "jitproxy: the bastion closed the connection before the SSH handshake"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			got := make(chan string, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					got <- err.Error()
					return
				}
				defer c.Close()
				// The client's bytes first, so that none is lost when the
				// ProxyCommand returns at our close.
				sent := make([]byte, len(PreambleTarget+"web-9\r\nclient bytes"))
				io.ReadFull(c, sent)
				for _, part := range strings.Split(tt.answer, "|") {
					io.WriteString(c, part)
				}
				got <- string(sent)
			}()
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			err = ProxyCommand(context.Background(), conn, "web-9", strings.NewReader("client bytes"), &out)
			var refused *RefusedError
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("ProxyCommand: %v", err)
			case tt.wantErr != "" && (!errors.As(err, &refused) || refused.Reason != tt.wantErr):
				t.Errorf("ProxyCommand: %v; want RefusedError %q", err, tt.wantErr)
			}
			if out.String() != tt.wantOut {
				t.Errorf("stdout %q; want %q", out.String(), tt.wantOut)
			}
			if sent := <-got; sent != PreambleTarget+"web-9\r\nclient bytes" {
				t.Errorf("the bastion got %q", sent)
			}
		})
	}
}

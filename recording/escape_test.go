package recording

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// splits returns every way to cut s into two pieces, and into three.
func splits(s string) [][]string {
	var out [][]string
	for i := 0; i <= len(s); i++ {
		out = append(out, []string{s[:i], s[i:]})
		for j := i; j <= len(s); j++ {
			out = append(out, []string{s[:i], s[i:j], s[j:]})
		}
	}
	return out
}

// escapeStream escapes writes as one stream through a utf8Tail, as Close
// ends it, and decodes the JSON string it makes.
func escapeStream(t *testing.T, writes []string) string {
	t.Helper()
	var tail utf8Tail
	b := []byte{'"'}
	for _, w := range writes {
		b = tail.appendEscaped(b, []byte(w))
	}
	b = tail.appendInvalid(b)
	b = append(b, '"')
	var got string
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%q escapes to invalid JSON %s: %v", writes, b, err)
	}
	return got
}

func TestEscapeSplitUTF8(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"ascii", "ls -la\r\n", "ls -la\r\n"},
		{"e acute", "caf\u00e9!", "café!"},
		{"euro", "\u20ac", "€"},
		{"emoji", "a\U0001F600b", "a😀b"},
		{"two emoji", "\U0001F600\U0001F680", "😀🚀"},
		{"invalid byte", "a\xffb", "a\ufffdb"},
		{"lone continuation", "\x80\x80", "\ufffd\ufffd"},
		{"broken euro then ascii", "\xe2\x82x", "\ufffd\ufffdx"},
		{"broken euro then euro", "\xe2\x82\xe2\x82\xac", "\ufffd\ufffd€"},
		{"cut emoji at end", "ok\xf0\x9f\x98", "ok\ufffd\ufffd\ufffd"},
		{"overlong", "\xc0\xaf", "\ufffd\ufffd"},
		{"surrogate", "\xed\xa0\x80", "\ufffd\ufffd\ufffd"},
		{"above max", "\xf4\x90\x80\x80", "\ufffd\ufffd\ufffd\ufffd"},
		{"replacement char itself", "\ufffd", "\ufffd"},
		{"controls", "\x00\x07\b\t\n\f\r\x1b[0m\x7f", "\x00\x07\b\t\n\f\r\x1b[0m\x7f"},
		{"quotes", `say "hi" \o/`, `say "hi" \o/`},
		{"line separators", "a\u2028b\u2029c", "a\u2028b\u2029c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if want := string([]rune(tt.in)); want != tt.want {
				t.Fatalf("bad test: Go decodes %q as %q, not %q", tt.in, want, tt.want)
			}
			for _, writes := range splits(tt.in) {
				if got := escapeStream(t, writes); got != tt.want {
					t.Errorf("writes %q: got %q; want %q", writes, got, tt.want)
				}
			}
		})
	}
}

func TestEscapeOutput(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"plain", "abc", "abc"},
		{"quote and backslash", `a"b\c`, `a\"b\\c`},
		{"short escapes", "\b\f\n\r\t", `\b\f\n\r\t`},
		{"other controls", "\x00\x1b\x1f\x7f", `\u0000\u001b\u001f\u007f`},
		{"utf-8 kept", "café 😀", "café 😀"},
		{"invalid", "\xff", `\ufffd`},
		{"js separators", "\u2028\u2029", `\u2028\u2029`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(appendEscaped(nil, tt.in)); got != tt.want {
				t.Errorf("string: got %s; want %s", got, tt.want)
			}
			if got := string(appendEscaped(nil, []byte(tt.in))); got != tt.want {
				t.Errorf("bytes: got %s; want %s", got, tt.want)
			}
		})
	}
}

// TestCastSplitUTF8 writes characters split at every byte boundary through
// a real Cast and reads the file back.
func TestCastSplitUTF8(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"e acute", "é"},
		{"emoji", "😀"},
		{"mixed", "é😀\xff\"\x1b\\"},
		{"cut at the end", "x\xf0\x9f\x98"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newRecorder(t, Config{})
			c := startCast(t, r)
			var want strings.Builder
			for _, writes := range splits(tt.in) {
				for _, w := range writes {
					c.Output([]byte(w))
				}
				want.WriteString(tt.in)
			}
			m, err := c.Close("exit")
			if err != nil {
				t.Fatal(err)
			}
			checkLines(t, readPlain(t, m.Path))
			_, events, _ := readEvents(t, m.Path)
			if got, want := outputText(events), string([]rune(want.String())); got != want {
				t.Errorf("got %q; want %q", got, want)
			}
		})
	}
}

// escapeBytewise is appendEscaped as it was before bulk escaping: one
// table look-up per byte. The bulk version must give the same bytes.
func escapeBytewise(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		b := s[i]
		switch {
		case plain[b]:
			dst = append(dst, b)
		case b == '"' || b == '\\':
			dst = append(dst, '\\', b)
		case b == '\n':
			dst = append(dst, '\\', 'n')
		case b == '\r':
			dst = append(dst, '\\', 'r')
		case b == '\t':
			dst = append(dst, '\\', 't')
		case b == '\b':
			dst = append(dst, '\\', 'b')
		case b == '\f':
			dst = append(dst, '\\', 'f')
		case b < utf8.RuneSelf:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
		default:
			r, size := utf8.DecodeRune(s[i:])
			switch {
			case r == utf8.RuneError && size == 1:
				dst = append(dst, `\ufffd`...)
			case r == '\u2028' || r == '\u2029':
				dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			default:
				dst = append(dst, s[i:i+size]...)
			}
			i += size
			continue
		}
		i++
	}
	return dst
}

// TestEscapeBulk checks the word-at-a-time and run-doubling paths against
// the byte-at-a-time escaper, on inputs built to cross every 8-byte
// boundary with every kind of byte, and on long runs of one control byte.
func TestEscapeBulk(t *testing.T) {
	pieces := []string{"a", "plain text ", "\x00", "\x00\x00\x00\x00\x00\x00\x00\x00\x00", "\x01\x01\x01", "\x1f", "\x7f", "\"", "\\",
		"\r\n", "\t", "\x1b[0m", "é", "😀", "\xff", "\xe2\x80\xa8", "~", " ", "\x80"}
	rng := rand.New(rand.NewPCG(1, 2))
	inputs := [][]byte{
		make([]byte, 32<<10),
		bytes.Repeat([]byte{0x1b}, 1000),
		append(bytes.Repeat([]byte("x"), 13), make([]byte, 77)...),
	}
	for range 2000 {
		var b []byte
		for range rng.IntN(30) {
			b = append(b, pieces[rng.IntN(len(pieces))]...)
		}
		inputs = append(inputs, b)
	}
	for _, in := range inputs {
		got := appendEscaped([]byte("prefix"), in)
		want := escapeBytewise([]byte("prefix"), in)
		if !bytes.Equal(got, want) {
			t.Fatalf("%q: got %q; want %q", in, got, want)
		}
		if !json.Valid(append(append([]byte{'"'}, got[len("prefix"):]...), '"')) {
			t.Fatalf("%q escapes to invalid JSON", in)
		}
	}
}

// TestPlain8 checks the word test against the table for every byte in
// every position.
func TestPlain8(t *testing.T) {
	for pos := range 8 {
		for b := range 256 {
			w := bytes.Repeat([]byte("a"), 8)
			w[pos] = byte(b)
			if got, want := plain8(load8(w)), plain[b]; got != want {
				t.Errorf("byte %#x at %d: got %v; want %v", b, pos, got, want)
			}
		}
	}
}

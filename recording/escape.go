package recording

import (
	"slices"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// plain marks the ASCII bytes that a JSON string holds as they are. It is
// never written after initialization.
var plain = func() (t [256]bool) {
	for b := 0x20; b < 0x7f; b++ {
		t[b] = b != '"' && b != '\\'
	}
	return t
}()

// SWAR constants: a byte repeated in each of a word's 8 bytes.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// plain8 reports whether all 8 bytes of x (little-endian) are plain: ASCII
// from 0x20 to 0x7e and neither '"' nor '\\'. Each test is the exact
// "has a byte less than n" / "has a zero byte" bit trick: no false answers.
func plain8(x uint64) bool {
	ctl := (x - ones*0x20) &^ x // some byte < 0x20 (given none >= 0x80)
	q := x ^ (ones * '"')       // zero where a byte is '"'
	bs := x ^ (ones * '\\')     // zero where a byte is '\\'
	del := x ^ (ones * 0x7f)    // zero where a byte is DEL
	z := (q-ones)&^q | (bs-ones)&^bs | (del-ones)&^del
	return (ctl|z|x)&highs == 0
}

// appendEscaped appends s to dst as the body of a JSON string (without the
// quotes). Quotes, backslashes and control characters are escaped, as are
// U+2028 and U+2029 (which break JavaScript) and DEL; valid UTF-8 is kept
// as is; every byte that is not part of a valid UTF-8 sequence becomes
// \ufffd. Runs of plain ASCII are found 8 bytes at a time and copied with
// one append; a run of one control byte (NULs, typically) is expanded by
// doubling copies. It allocates only when dst must grow.
func appendEscaped[S ~string | ~[]byte](dst []byte, s S) []byte {
	start := 0 // s[start:i] is plain text not yet appended
	for i := 0; i < len(s); {
		for i+8 <= len(s) && plain8(load8(s[i:])) {
			i += 8
		}
		for i < len(s) && plain[s[i]] { // up to the byte that failed the word
			i++
		}
		if i >= len(s) {
			break
		}
		b := s[i]
		if b < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				n := runLength(s[i:], b)
				dst = appendRepeated(dst, [6]byte{'\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf]}, n)
				i += n
				start = i
				continue
			}
			i++
			start = i
			continue
		}
		r, size := decodeRune(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(dst, s[start:]...)
}

// load8 reads the first 8 bytes of s, little-endian.
func load8[S ~string | ~[]byte](s S) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// runLength returns how many bytes at the start of s are b (at least one:
// s[0] is b), comparing 8 at a time.
func runLength[S ~string | ~[]byte](s S, b byte) int {
	word := ones * uint64(b)
	i := 0
	for i+8 <= len(s) && load8(s[i:]) == word {
		i += 8
	}
	for i < len(s) && s[i] == b {
		i++
	}
	return i
}

// appendRepeated appends n copies of esc to dst, doubling what it has
// appended with each copy.
func appendRepeated(dst []byte, esc [6]byte, n int) []byte {
	total := n * len(esc)
	at := len(dst)
	dst = slices.Grow(dst, total)
	dst = append(dst, esc[:]...)
	for done := len(esc); done < total; {
		k := min(done, total-done)
		dst = append(dst, dst[at:at+k]...)
		done += k
	}
	return dst
}

// decodeRune is utf8.DecodeRune for a string or a byte slice.
func decodeRune[S ~string | ~[]byte](s S) (rune, int) {
	var b [utf8.UTFMax]byte
	n := copy(b[:], s)
	return utf8.DecodeRune(b[:n])
}

// utf8Tail carries an incomplete UTF-8 sequence from the end of one write
// to the start of the next, so a character split across writes is recorded
// whole. The escaped text of a stream does not depend on how it was split.
type utf8Tail struct {
	b [utf8.UTFMax - 1]byte
	n int
}

// appendEscaped escapes p as the continuation of the stream, appending to
// dst, and keeps an incomplete sequence at the end of p for the next call.
func (t *utf8Tail) appendEscaped(dst, p []byte) []byte {
	if t.n > 0 {
		var buf [utf8.UTFMax]byte
		n := copy(buf[:], t.b[:t.n])
		n += copy(buf[n:], p)
		seq := buf[:n]
		if !utf8.FullRune(seq) {
			// p is too short to finish the sequence: keep carrying.
			t.n = copy(t.b[:], seq)
			return dst
		}
		if r, size := utf8.DecodeRune(seq); r == utf8.RuneError && size == 1 {
			// The sequence broke off: each carried byte is invalid, as it
			// would have been had it arrived in one write with p.
			dst = t.appendInvalid(dst)
		} else {
			dst = appendEscaped(dst, seq[:size])
			p = p[size-t.n:]
		}
		t.n = 0
	}
	for i := len(p) - 1; i >= 0 && i >= len(p)-(utf8.UTFMax-1); i-- {
		if utf8.RuneStart(p[i]) {
			if !utf8.FullRune(p[i:]) {
				t.n = copy(t.b[:], p[i:])
				p = p[:i]
			}
			break
		}
	}
	return appendEscaped(dst, p)
}

// appendInvalid appends \ufffd for each carried byte and empties t.
func (t *utf8Tail) appendInvalid(dst []byte) []byte {
	for range t.n {
		dst = append(dst, `\ufffd`...)
	}
	t.n = 0
	return dst
}

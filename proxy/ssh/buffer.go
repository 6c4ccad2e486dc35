package ssh

// smallBufSize is the read buffer a copier holds while its reads are
// small: enough for keystrokes, echoes and prompts.
const smallBufSize = 2 << 10

// relayBuf is a copier's read buffer. It reads into a small buffer of its
// own until a read fills that, then into a pooled bufSize one until a read
// is short, one that the small buffer could have held: the copier has
// caught up with its source, its next read will probably wait, and it
// waits holding the small buffer. An idle channel's copiers then hold
// 2 KiB each, not 32 KiB, and a bulk transfer, whose reads are large
// whether or not they fill bufSize, reads bufSize at a time.
type relayBuf struct {
	srv   *Server
	small []byte
	big   *[bufSize]byte // from srv's pool; nil while reads are small
}

// buf is where the next read goes.
func (b *relayBuf) buf() []byte {
	if b.big != nil {
		return b.big[:]
	}
	if b.small == nil {
		b.small = make([]byte, smallBufSize)
	}
	return b.small
}

// adapt moves to the big buffer after a read of n bytes filled the small
// one, and back after a short read. Call it once the n bytes are written
// on: they live in the buffer it may give back.
func (b *relayBuf) adapt(n int) {
	switch {
	case b.big == nil && n == len(b.small):
		b.big = b.srv.getBuf()
	case b.big != nil && n <= smallBufSize:
		b.release()
	}
}

// release gives the big buffer back to the pool.
func (b *relayBuf) release() {
	if b.big != nil {
		b.srv.putBuf(b.big)
		b.big = nil
	}
}

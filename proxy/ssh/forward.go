package ssh

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"

	gossh "golang.org/x/crypto/ssh"
)

// forward serves a port-forwarding channel: nc was opened by one side, and
// open opens its twin on the other with the same type and payload (so a
// local forward connects from the target, as it would without jitproxy).
// Forwarded bytes are counted, not recorded.
func (ss *sshSession) forward(nc gossh.NewChannel, open func(string, []byte) (gossh.Channel, <-chan *gossh.Request, error), kind string) {
	other, oreqs, err := open(nc.ChannelType(), nc.ExtraData())
	if err != nil {
		ss.refuseChannel(nc, ss.upstreamOpenError(err))
		return
	}
	this, treqs, err := nc.Accept()
	if err != nil {
		other.Close()
		return
	}
	ss.log.Debug().Str("channel_type", nc.ChannelType()).Msg(kind + " opened")
	var wg sync.WaitGroup // the request loops, which end when pipe closes the channels
	defer wg.Wait()
	wg.Go(func() { gossh.DiscardRequests(oreqs) })
	wg.Go(func() { gossh.DiscardRequests(treqs) })
	// Which side is the client's decides which byte counter each copier
	// adds to.
	up, down := &ss.bytesUp, &ss.bytesDown
	if nc.ChannelType() == "forwarded-tcpip" || nc.ChannelType() == "forwarded-streamlocal@openssh.com" {
		up, down = down, up
	}
	p := pipe{a: this, b: other, srv: ss.srv}
	p.run(up, down)
}

// pipe relays raw bytes between two channels, both ways.
type pipe struct {
	a, b gossh.Channel
	srv  *Server
}

// run copies a to b and b to a until both directions end, half-closing
// each at EOF and closing both on the first error.
func (p pipe) run(ab, ba *atomic.Int64) {
	errc := make(chan error, 2) // one per copier, so neither blocks on send
	go p.copy(errc, p.b, p.a, ab)
	go p.copy(errc, p.a, p.b, ba)
	for range 2 {
		if err := <-errc; err != nil {
			p.a.Close()
			p.b.Close()
		}
	}
	p.a.Close()
	p.b.Close()
}

// copy copies src to dst, then half-closes dst.
func (p pipe) copy(errc chan<- error, dst, src gossh.Channel, n *atomic.Int64) {
	b := relayBuf{srv: p.srv}
	defer b.release()
	for {
		buf := b.buf()
		m, err := src.Read(buf)
		if m > 0 {
			if _, werr := dst.Write(buf[:m]); werr != nil {
				errc <- werr
				return
			}
			n.Add(int64(m))
		}
		b.adapt(m)
		if err != nil {
			dst.CloseWrite()
			if errors.Is(err, io.EOF) {
				err = nil
			}
			errc <- err
			return
		}
	}
}

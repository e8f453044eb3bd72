package relay

import (
	"bytes"
	"io"
	"time"
	"wsgate/frame"
)

// pump reads frames from src and relays them to dst until src is finished:
// its close handshake done and its TCP connection ended, or it is gone.
// It reports true if it parked src instead (park.go): the session goes on
// without this goroutine.
func (s *Session) pump(src, dst *leg) (parked bool) {
	s.rearm(src)
	drained := false
	for {
		if src.dead.Load() {
			break
		}
		if s.pushReady(src) {
			s.deliver() // between two messages (push.go)
			if s.park(src) {
				return true // it was idle: parked again at once
			}
		}
		if src.recvClose.Load() {
			// The peer sent its Close: nothing it sends from now on is a
			// frame we act on. Wait for our reply to go out (we are woken),
			// then for its FIN. The server side closes first (RFC 6455
			// §7.1.1): half-close the client leg once both Closes are out.
			if src.abrupt && src.closeOut.Load() {
				// Its Close was invalid: we answered, nothing more
				// is to come. Close without waiting for its FIN.
				s.drainNow(src)
				break
			}
			// closeOut, not sentClose: sentClose is published before
			// the write, and a half-close before it would make the
			// write fail (EPIPE) and lose the reply.
			if src.closeOut.Load() && !drained {
				drained = true
				if src.side == SideClient {
					src.closeWrite()
				}
			}
			if !s.discard(src) {
				break
			}
			continue
		}
		h, err := frame.ReadHeader(src.br, src.rules)
		if err == nil && h.Rsv != 0 && h.Opcode.IsControl() {
			// RSV1 is permessage-deflate's, and only for data (RFC 7692
			// §6.1); a continuation's is refused by src.msg.
			err = frame.ErrRsv1NotFirst
		}
		if src.pend != nil && (err != nil || h.Opcode.IsControl() || h.Length > smallFrame || src.sentClose.Load()) {
			s.flush(src) // only small data frames join a batch
		}
		if err != nil {
			if isTimeout(err) {
				if !s.timer(src) {
					break
				}
				if s.park(src) {
					return true
				}
				continue
			}
			if _, ok := err.(*frame.Error); ok {
				if h.Opcode == frame.OpClose {
					s.badClose(src, err)
					continue
				}
				if !src.sentClose.Load() {
					s.violation(src, err)
				}
				// Linger (docs/relay.md "Close translation"): step over the payload
				// and look for the peer's Close, even if it goes on sending
				// bad frames after ours. Closing with its data unread would
				// make the kernel answer with a RST that can destroy the
				// Close frame we just sent; the close deadline bounds this.
				if !s.skip(src, h.Length) {
					break
				}
				continue
			}
			// EOF or reset: the leg is over.
			s.gone(src)
			break
		}
		src.lastRead = s.now()
		src.pingSent = 0
		src.frames.Add(1)
		closing := s.closingLeg(src)
		if s.lim != nil && src.side == SideClient && h.Opcode != frame.OpClose && !closing {
			if !s.limit(src, h) {
				// Over a limit, on_exceed: close. As after a violation,
				// step over the payload and linger for the client's Close,
				// so that its 1008 is not destroyed by a reset.
				if !s.skip(src, h.Length) {
					break
				}
				continue
			}
			// A throttle wait may have ended because a Close was sent.
			closing = s.closingLeg(src)
		}
		if closing && !s.relayWhileOwing(src, h) {
			// We closed this leg (or owe its peer a Close): discard
			// data, wait for its Close.
			if !s.awaitClose(src, h) {
				break
			}
			continue
		}
		if h.Opcode.IsControl() {
			if !s.control(src, dst, h) {
				break
			}
			continue
		}
		if err := src.msg.Next(h); err != nil {
			s.flush(src)
			s.violation(src, err)
			if !s.skip(src, h.Length) {
				break
			}
			continue
		}
		s.lastData.Store(src.lastRead)
		if !s.data(src, dst, h) {
			break
		}
	}
	s.finish(src)
	return false
}

// closingLeg reports whether src's data is no longer relayed: we sent it a
// Close, or (client) it broke the protocol and owes us nothing more.
func (s *Session) closingLeg(src *leg) bool {
	return src.sentClose.Load() || (src.side == SideClient && s.owing.Load())
}

// relayWhileOwing reports whether a data frame from src, the upstream we
// sent a Close to after a client's protocol error, is still relayed to the
// client: it was sent before the upstream saw our Close.
func (s *Session) relayWhileOwing(src *leg, h frame.Header) bool {
	return src.side == SideUpstream && s.owing.Load() && !h.Opcode.IsControl() && !src.recvClose.Load()
}

// drainNow reads what src's peer already sent (bounded), without waiting
// for more, so that closing the connection does not make the kernel answer
// unread data with a reset that could destroy the Close just sent.
func (s *Session) drainNow(src *leg) {
	bp := smallPool.Get().(*[]byte)
	defer smallPool.Put(bp)
	_ = src.conn.SetReadDeadline(time.Now())
	for n := 0; n < drainMax; {
		k, err := src.br.Read(*bp)
		n += k
		if err != nil {
			return
		}
	}
}

// drainMax bounds what drainNow reads.
const drainMax = 1 << 20

// finish ends src's connection: the other leg, if it is waiting for a reply
// that src will never give, gets its own code echoed. So does src itself if
// its Close is still unanswered (its close deadline ran out before the
// other pump's): a session never hangs up on a Close without replying.
func (s *Session) finish(src *leg) {
	s.flush(src)
	o := s.other(src)
	s.emu.Lock()
	if src.side == SideUpstream {
		s.settle()
	}
	if src.recvClose.Load() {
		s.closeSide(src, codeNone, "")
	}
	if o.recvClose.Load() {
		s.closeSide(o, codeNone, "")
	} else if !o.sentClose.Load() && !src.cut.Load() {
		s.applyLocked(goneEvent(src.side), src.side.String())
	}
	s.emu.Unlock()
	if src.dead.Load() {
		// A write failed or the peer vanished: no close_notify (closeNow).
		src.closeNow()
	} else if !src.eof {
		// The peer may still have sent something we did not read: Close
		// would then answer with a RST and no FIN, and the peer could
		// lose our Close frame or see a reset instead of the end. The
		// FIN goes out first. After the peer's own FIN nothing can be
		// unread, and Close alone sends ours.
		src.closeWrite()
	}
	// Otherwise Close alone: it sends the FIN (and TLS's close_notify)
	// that a shutdown(SHUT_WR) first would only repeat. The client leg
	// was half-closed already, when both Closes were out (pump).
	src.dead.Store(true)
	src.unwatch()
	src.conn.Close()
	putReader(src.br)
	src.br = nil
	s.releaseInflater(src)
}

// discard reads and drops whatever src still sends, until EOF or its close
// deadline. It reports whether to keep going.
func (s *Session) discard(src *leg) bool {
	bp := smallPool.Get().(*[]byte)
	defer smallPool.Put(bp)
	_, err := src.br.Read(*bp)
	if err == nil {
		return true
	}
	if isTimeout(err) {
		return s.timer(src)
	}
	src.eof = err == io.EOF
	return false
}

// readFull reads len(p) payload bytes from src, running src's timers when a
// read times out. It reports false if src ended first.
func (s *Session) readFull(src *leg, p []byte) bool {
	for len(p) > 0 {
		n, err := src.br.Read(p)
		p = p[n:]
		if err != nil {
			if isTimeout(err) && s.timer(src) {
				continue
			}
			if !isTimeout(err) {
				s.gone(src)
			}
			return false
		}
	}
	return true
}

// awaitClose handles a frame from a leg we have sent a Close to: data is
// dropped; its Close completes the handshake.
func (s *Session) awaitClose(src *leg, h frame.Header) bool {
	if h.Opcode != frame.OpClose {
		return s.skip(src, h.Length)
	}
	bp := smallPool.Get().(*[]byte)
	defer smallPool.Put(bp)
	p := (*bp)[:h.Length]
	if !s.readFull(src, p) {
		return false
	}
	frame.Mask(h.Key, 0, p)
	code, reason, err := frame.ParseClose(p)
	if err != nil {
		code, reason = frame.CloseNoStatus, nil
	}
	src.recvCode, src.recvWhy = code, string(reason)
	src.recvClose.Store(true)
	// If the other side started this close handshake, this is the reply it
	// waits for: relay it (docs/relay.md: "relays the upstream's Close reply").
	s.emu.Lock()
	if src.side == SideUpstream && s.owed != 0 {
		// The upstream answered the 1001 of a client's protocol error:
		// now the client gets its 1002/1007.
		s.settle()
	} else if o := s.other(src); o.recvClose.Load() {
		s.sendClose(o, code, string(reason))
	}
	s.emu.Unlock()
	if err != nil {
		src.abrupt = true
	}
	return true
}

// skip drops n payload bytes of a data frame from src. Data payloads may be
// large: they take a relay buffer, read straight from the socket.
func (s *Session) skip(src *leg, n int64) bool {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for n > 0 {
		k := int64(len(buf))
		if n < k {
			k = n
		}
		if !s.readFull(src, buf[:k]) {
			return false
		}
		n -= k
	}
	return true
}

// control relays a ping or pong, or handles a Close, from src.
func (s *Session) control(src, dst *leg, h frame.Header) bool {
	// A pooled buffer, not one on the stack: reads and writes take their
	// slices through interfaces, so a stack array would be moved to the
	// heap on every frame.
	bp := smallPool.Get().(*[]byte)
	defer smallPool.Put(bp)
	buf := *bp
	const room = frame.MaxHeaderSize
	p := buf[room : room+int(h.Length)]
	if !s.readFull(src, p) {
		return false
	}
	if h.Masked {
		frame.Mask(h.Key, 0, p)
	}
	switch h.Opcode {
	case frame.OpClose:
		code, reason, err := frame.ParseClose(p)
		if err != nil {
			s.badClose(src, err)
			return true
		}
		src.recvCode, src.recvWhy = code, string(reason)
		src.recvClose.Store(true)
		src.closeDeadline.CompareAndSwap(0, s.now()+2*int64(s.cfg.CloseTimeout))
		s.rearm(src)
		s.emu.Lock()
		if !src.sentClose.Load() {
			// src starts the close handshake: relay it.
			s.setWhy(whyNormal, src.side.String())
		}
		s.sendClose(dst, code, string(reason))
		s.emu.Unlock()
		if s.Hooks != nil && s.Hooks.CloseRelayed != nil {
			s.Hooks.CloseRelayed(src.side)
		}
		return true
	case frame.OpPong:
		if bytes.Equal(p, src.token[:]) {
			return true // the answer to our keepalive: consumed
		}
	}
	out := h
	out.Masked = dst.side == SideUpstream
	if out.Masked {
		out.Key = frame.NewKey()
		frame.Mask(out.Key, 0, p)
	}
	hs := out.Size()
	frame.PutHeader(buf[room-hs:], out)
	return s.write(dst, buf[room-hs:room+len(p)])
}

// write writes one whole frame to dst. A failed write means dst's peer is
// gone. It reports whether src's pump should continue (it always should:
// dst's failure is handled through the table).
func (s *Session) write(dst *leg, b []byte) bool {
	if !dst.lockWrite() {
		return true
	}
	err := dst.writeLocked(b, s.cfg.WriteTimeout, time.Now())
	dst.wmu.Unlock()
	if err != nil {
		s.gone(dst)
	}
	return true
}

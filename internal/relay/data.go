package relay

import (
	"io"

	"wsgate/frame"
)

// Data frames: small frames read whole and checked, large ones streamed,
// pipelined small frames coalesced into one write.

// data relays one data frame. Frames up to smallFrame are read and checked
// whole before they are forwarded; larger ones stream through one buffer
// (a large one when it can, see streamChunk).
func (s *Session) data(src, dst *leg, h frame.Header) bool {
	const room = frame.MaxHeaderSize
	out := h
	out.Masked = dst.side == SideUpstream
	if out.Masked {
		out.Key = frame.NewKey()
	}
	if h.Length > smallFrame {
		if big := getStreamBuf(); big != nil {
			defer putStreamBuf(big)
			return s.stream(src, dst, h, out, *big)
		}
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	if h.Length <= smallFrame {
		p := buf[room : room+int(h.Length)]
		if !s.readFull(src, p) {
			return false
		}
		if err := s.relayPayload(src, h, out, 0, p); err != nil {
			s.flush(src)
			s.violation(src, err)
			return true
		}
		s.count(src, h)
		hs := out.Size()
		frame.PutHeader(buf[room-hs:], out)
		return s.emit(src, dst, buf[room-hs:room+len(p)])
	}
	return s.stream(src, dst, h, out, buf)
}

// relayPayload turns a chunk of src's frame payload at pos into dst's: it
// unmasks it, validates it, and masks it with out's key. A binary payload
// needs no inspection, so client -> upstream it is re-masked in one pass.
func (s *Session) relayPayload(src *leg, h, out frame.Header, pos int, p []byte) error {
	if src.dfl != nil && src.msg.Compressed() {
		return s.inflatePayload(src, h, out, pos, p) // deflate.go
	}
	if h.Masked && out.Masked && src.msg.Opcode() != frame.OpText {
		frame.Remask(h.Key, out.Key, pos, p)
	} else {
		if h.Masked {
			frame.Mask(h.Key, pos, p)
		}
		if err := src.msg.Payload(p); err != nil {
			return err
		}
		if out.Masked {
			frame.Mask(out.Key, pos, p)
		}
	}
	if pos+len(p) == int(h.Length) {
		return src.msg.EndFrame()
	}
	return nil
}

func (s *Session) count(src *leg, h frame.Header) {
	src.bytes.Add(h.Length)
	if h.Fin {
		src.messages.Add(1)
	}
}

// stream relays a large frame chunk by chunk, holding dst's write lock for
// the whole frame so nothing interleaves with it. If src ends or its payload
// turns out invalid part-way, dst has a partial frame and can only be
// truncated (TCP close) — unless none of it went out yet, in which case dst
// can still get a clean Close.
func (s *Session) stream(src, dst *leg, h, out frame.Header, buf []byte) bool {
	const room = frame.MaxHeaderSize
	writing := dst.lockWrite()
	hs := out.Size()
	frame.PutHeader(buf[room-hs:], out)
	first := true // nothing of the frame was written yet
	// abort gives up dst's copy of the frame; by is who caused it.
	abort := func(by string) {
		if !writing {
			return
		}
		writing = false
		if !first {
			s.truncate(dst, by)
		}
		dst.wmu.Unlock()
	}
	var pos int64
	for pos < h.Length {
		// The first chunk is at most smallFrame, as for a whole small
		// frame: a violation in it still gets dst a clean Close (docs/:
		// only a leg past its first 16 KiB is truncated).
		chunk := int64(len(buf) - room)
		if first {
			chunk = smallFrame
		}
		n := min(h.Length-pos, chunk)
		var k int
		var err error
		if first && src.dfl != nil && src.msg.Compressed() {
			// A compressed frame's first chunk is read whole: 16 KiB of
			// deflate data can inflate to 16 MiB, and a bomb must be found
			// before any of it went out (deflate.go).
			k, err = io.ReadFull(src.br, buf[room:room+int(n)])
		} else {
			k, err = src.br.Read(buf[room : room+int(n)])
		}
		if k > 0 {
			// Payload is life: a peer inside a large frame cannot answer a
			// ping until the frame ends (RFC 6455 §5.4: control frames
			// only between fragments), so its bytes count as the frame
			// the pong timeout waits for.
			src.lastRead = s.now()
			src.pingSent = 0
		}
		if err != nil && k == 0 {
			t := tickGone // EOF or reset: src vanished mid-frame
			if isTimeout(err) {
				if t = s.tick(src); t == tickGoOn {
					s.rearm(src)
					continue
				}
			}
			by := "gateway"
			if t == tickGone {
				by = src.side.String()
			}
			abort(by)
			if !s.act(src, t) {
				return false
			}
			// Still reading src (idle_timeout): step over the rest of
			// the frame and wait for its Close.
			return s.skip(src, h.Length-pos)
		}
		p := buf[room : room+k]
		if err := s.relayPayload(src, h, out, int(pos), p); err != nil {
			abort("gateway")
			s.violation(src, err)
			// Stay in step with src's framing to find its Close reply.
			return s.skip(src, h.Length-pos-int64(k))
		}
		pos += int64(k)
		s.lastData.Store(s.now())
		if !writing {
			continue
		}
		b := p
		if first {
			b = buf[room-hs : room+k]
			first = false
		}
		if err := dst.writeChunk(b, s.cfg.WriteTimeout); err != nil {
			// dst stopped taking writes: it is gone, now (its pump and
			// the table's close for src must not wait for the rest of
			// this frame). Go on reading the frame so src stays in step.
			dst.wmu.Unlock()
			writing = false
			s.gone(dst)
		}
	}
	if writing {
		dst.wmu.Unlock()
	}
	s.count(src, h)
	return true
}

// emit writes a small frame b (read from src) to the other leg. When the
// next frame from src is already in src's read buffer in full, b is held
// back and written together with the frames after it: one write system call
// for a burst of pipelined frames instead of one per frame. It never waits
// for input: as soon as the next frame is not complete in the buffer, the
// batch goes out, so coalescing adds no latency.
func (s *Session) emit(src, dst *leg, b []byte) bool {
	if s.nextSmallDataBuffered(src) {
		if src.pend != nil && len(*src.pend)+len(b) > pendMax {
			s.flush(src)
		}
		if src.pend == nil {
			src.pend = pendPool.Get().(*[]byte)
		}
		*src.pend = append(*src.pend, b...)
		return true
	}
	if src.pend == nil {
		return s.write(dst, b)
	}
	if len(*src.pend)+len(b) > pendMax {
		s.flush(src)
		return s.write(dst, b)
	}
	*src.pend = append(*src.pend, b...)
	s.flush(src)
	return true
}

// flush writes the frames src's pump holds back, if any.
func (s *Session) flush(src *leg) {
	if src.pend == nil {
		return
	}
	p := src.pend
	src.pend = nil
	if len(*p) > 0 {
		s.write(s.other(src), *p)
	}
	*p = (*p)[:0]
	pendPool.Put(p)
}

// nextSmallDataBuffered reports whether src's read buffer holds the whole
// next frame and it is a data frame that emit may batch.
func (s *Session) nextSmallDataBuffered(src *leg) bool {
	n := src.br.Buffered()
	if n < 2 {
		return false
	}
	b, _ := src.br.Peek(n)
	h, hn, err := frame.DecodeHeader(b, src.rules)
	return err == nil && !h.Opcode.IsControl() && h.Length <= smallFrame && int64(n-hn) >= h.Length
}

package relay

// permessage-deflate (RFC 7692; README "Compression"). The gateway does not
// compress or decompress for either side: compressed frames are relayed as
// they arrived (re-masked toward the upstream). It inflates each compressed
// message as it streams through, only to check it: the inflated size
// against max_message_bytes (1009 the moment inflation passes it, so a
// small frame that would inflate to gigabytes costs at most that much
// work and no more memory than one inflater), the UTF-8 of text after
// inflation, and data that does not inflate (1007).
//
// # Inflaters
//
// A deflate decoder pulls its input (io.Reader); the relay pushes a
// message's payload chunk by chunk as frames arrive, between which it may
// relay control frames, wait or park. An inflater therefore runs its
// decoder in a coroutine (iter.Pull): the decoder's reads suspend it when
// the chunk it was given is used up, and feed resumes it with the next.
// A coroutine switch costs no goroutine scheduling and no allocation.
//
// Inflaters (decoder, coroutine, a 32 KiB output ring) are pooled and held
// only while a compressed message is in flight, so a session between
// messages, idle or parked, holds none. With context takeover a side's
// compressor may refer to earlier messages' output: the last window
// (≤ 32 KiB) of what each direction inflated is kept per session as the
// next message's dictionary (flate.Resetter takes one).

import (
	"errors"
	"io"
	"iter"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/flate"

	"wsgate/frame"
)

// Deflate is the permessage-deflate a session negotiated: for each side,
// whether it compresses with context takeover and its LZ77 window
// (window bits 8–15; 0 means 15). README "Compression".
type Deflate struct {
	ClientTakeover, UpstreamTakeover bool
	ClientWindowBits                 int // client_max_window_bits
	UpstreamWindowBits               int // server_max_window_bits
}

// SetDeflate turns permessage-deflate on for the session: RSV1 becomes
// legal on the first frame of a data message in both directions, and every
// compressed message is inflated to be checked. Call before Run.
func (s *Session) SetDeflate(d Deflate) {
	s.c.rules.AllowRsv |= frame.Rsv1
	s.u.rules.AllowRsv |= frame.Rsv1
	both := new([2]inflState) // one allocation per session
	s.c.dfl, s.u.dfl = &both[0], &both[1]
	s.c.dfl.init(d.ClientTakeover, d.ClientWindowBits)
	s.u.dfl.init(d.UpstreamTakeover, d.UpstreamWindowBits)
}

// Inflated is what was inflated of the messages read from side d so far:
// compressed messages checked and their inflated bytes. Safe to call at
// any time.
func (s *Session) Inflated(d Side) (messages, bytes int64) {
	st := s.leg(d).dfl
	if st == nil {
		return 0, 0
	}
	return st.messages.Load(), st.bytes.Load()
}

// inflState is a leg's permessage-deflate state. Owned by the leg's pump
// (the tallies are read by others).
type inflState struct {
	window   int    // dictionary kept with takeover: 1 << window bits
	takeover bool   // the sender keeps its LZ77 window between messages
	dict     []byte // takeover: the last window bytes inflated; allocated once
	w        *inflater
	done     bool // the message's deflate data ended (a BFINAL block) before its payload did

	messages, bytes atomic.Int64
}

func (st *inflState) init(takeover bool, bits int) {
	if bits == 0 {
		bits = 15
	}
	st.takeover, st.window = takeover, 1<<bits
}

// inflatePayload is relayPayload for a compressed message: p (src's
// payload at pos of frame h) is unmasked, inflated to be checked, and
// masked with out's key. The frame goes on as it arrived.
func (s *Session) inflatePayload(src *leg, h, out frame.Header, pos int, p []byte) error {
	if h.Masked {
		frame.Mask(h.Key, pos, p)
	}
	st := src.dfl
	last := pos+len(p) == int(h.Length) && src.msg.Final()
	if st.w == nil {
		st.w = getInflater()
		st.done = false
		var dict []byte
		if st.takeover {
			dict = st.dict
		}
		st.w.begin(dict, src.msg.Opcode() == frame.OpText, s.cfg.MaxMessage)
	}
	var err error
	if !st.done && (len(p) > 0 || last) {
		var finished bool
		finished, err = st.w.feed(p, last)
		st.done = finished
	}
	if out.Masked {
		frame.Mask(out.Key, pos, p)
	}
	if err == nil && last {
		if !st.done {
			// Cannot happen: the last feed ends the deflate data.
			err = frame.ErrBadDeflate
		} else {
			st.messages.Add(1)
			st.bytes.Add(st.w.size)
			if st.takeover {
				st.dict = st.w.saveDict(st.dict, st.window)
			}
		}
	}
	if err != nil || last {
		s.releaseInflater(src)
	}
	return err
}

// releaseInflater gives src's inflater back to the pool, abandoning any
// message it was in (a violation, or the leg's end).
func (s *Session) releaseInflater(src *leg) {
	if st := src.dfl; st != nil && st.w != nil {
		st.w.abandon()
		putInflater(st.w)
		st.w = nil
	}
}

// deflateTail ends a message's deflate data: RFC 7692 §7.2.2 strips the
// empty stored block 00 00 ff ff from every message and the receiver
// appends it again; then comes an empty final block, so the decoder sees
// the end of a complete stream instead of running out of input.
var deflateTail = [...]byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

// ringSize is an inflater's output ring: the largest dictionary.
const ringSize = 32 << 10

// Statuses an inflater's coroutine yields.
const (
	stMore    = iota // the chunk is used up: feed the next
	stDone           // the deflate data ended and every check passed
	stTooBig         // inflated size over the cap
	stBadUTF8        // text that is not UTF-8
	stBadData        // not valid deflate data
	stAbandoned
)

var errAbandoned = errors.New("relay: inflation abandoned")

// inflater checks one compressed message at a time. The pump calls begin,
// then feed for each chunk of payload; the decoder runs in a coroutine
// that reads from the inflater (Read, ReadByte) and suspends when the
// chunk is used up.
type inflater struct {
	*inflCore
	next func() (int, bool)
	stop func()
	// The memory: the decoder (its window and tables) and the output ring.
	// The coroutine holds them only while a message is in flight, so that
	// when the pool drops an idle inflater they are freed in that same
	// collection, not after its coroutine has been stopped.
	fr   io.ReadCloser // also a flate.Resetter
	ring [ringSize]byte
}

// inflCore is the coroutine's side of an inflater. It is referenced by the
// coroutine, never the other way round, so that a pooled inflater that the
// GC drops can be found unreachable and its coroutine stopped (AddCleanup).
type inflCore struct {
	fr    io.ReadCloser // inflater.fr while a message is in flight
	ring  []byte        // inflater.ring likewise
	yield func(int) bool

	// Input: what the decoder may read now.
	in      []byte
	tail    []byte // deflateTail, once the message's payload is all in
	last    bool   // in is the message's last chunk
	abandon bool   // the pump gave up on the message

	// Per message.
	dict []byte // the dictionary to begin with (nil: none)
	text bool
	max  int64 // max_message_bytes; 0: none
	size int64 // inflated so far
	pos  int   // next write in ring
	utf8 frame.UTF8
	busy bool // the coroutine is inside a message
}

var inflaterPool = sync.Pool{New: func() any { return newInflater() }}

// inflatersOut counts the inflaters sessions hold: one per compressed
// message in flight.
var inflatersOut atomic.Int64

func getInflater() *inflater {
	inflatersOut.Add(1)
	return inflaterPool.Get().(*inflater)
}

func putInflater(w *inflater) {
	inflaterPool.Put(w)
	inflatersOut.Add(-1)
}

// InflatersInUse is how many inflaters sessions hold now: one per
// compressed message in flight, none for a session between messages.
func InflatersInUse() int64 { return inflatersOut.Load() }

// newFlateReader makes an inflater's decoder. klauspost/compress's flate
// measured faster than compress/flate on every message kind and, unlike
// it, allocates nothing per dynamic block (BENCHMARKS.md "Inflating").
var newFlateReader = func(r io.Reader) io.ReadCloser { return flate.NewReader(r) }

func newInflater() *inflater {
	c := &inflCore{}
	w := &inflater{inflCore: c, fr: newFlateReader(c)}
	w.next, w.stop = iter.Pull(iter.Seq[int](c.run))
	// sync.Pool drops what it holds at GC time: stop the coroutine then,
	// or it would wait for a resume forever.
	runtime.AddCleanup(w, func(stop func()) { stop() }, w.stop)
	return w
}

// run is the coroutine: one message per iteration, each ended by yielding
// its status (where it waits for the next message's first feed).
func (c *inflCore) run(yield func(int) bool) {
	c.yield = yield
	for {
		_ = c.fr.(flate.Resetter).Reset(c, c.dict)
		c.dict = nil
		c.busy = true
		st := c.inflate()
		c.busy = false
		c.fr, c.ring = nil, nil
		if !yield(st) {
			return
		}
	}
}

// inflate runs the decoder to the end of the message's deflate data, or to
// the first failed check.
func (c *inflCore) inflate() int {
	for {
		end := min(len(c.ring), c.pos+ringSize/2)
		n, err := c.fr.Read(c.ring[c.pos:end])
		if n > 0 {
			p := c.ring[c.pos : c.pos+n]
			c.pos = (c.pos + n) % len(c.ring)
			c.size += int64(n)
			if c.max > 0 && c.size > c.max {
				return stTooBig
			}
			if c.text && !c.utf8.Write(p) {
				return stBadUTF8
			}
		}
		switch {
		case err == io.EOF:
			if c.text && !c.utf8.Complete() {
				return stBadUTF8
			}
			return stDone
		case c.abandon:
			return stAbandoned
		case err != nil:
			return stBadData
		}
	}
}

// Read and ReadByte are the decoder's input (flate.Reader, so it reads
// bytes directly and wraps nothing around us).
func (c *inflCore) Read(p []byte) (int, error) {
	if err := c.fill(); err != nil {
		return 0, err
	}
	src := &c.in
	if len(c.in) == 0 {
		src = &c.tail
	}
	n := copy(p, *src)
	*src = (*src)[n:]
	return n, nil
}

func (c *inflCore) ReadByte() (byte, error) {
	if len(c.in) > 0 { // the common case, kept small
		b := c.in[0]
		c.in = c.in[1:]
		return b, nil
	}
	if err := c.fill(); err != nil {
		return 0, err
	}
	src := &c.in
	if len(c.in) == 0 {
		src = &c.tail
	}
	b := (*src)[0]
	*src = (*src)[1:]
	return b, nil
}

// fill waits until there is input: the current chunk, or past the last
// one, the tail. After the tail, io.EOF.
func (c *inflCore) fill() error {
	for len(c.in) == 0 {
		if c.abandon {
			return errAbandoned
		}
		if c.last {
			if len(c.tail) == 0 {
				return io.EOF
			}
			return nil
		}
		if !c.yield(stMore) {
			c.abandon = true
		}
	}
	return nil
}

// begin starts a message: dict is the dictionary (context takeover), text
// whether it must be UTF-8 once inflated, max the cap on its inflated size.
func (w *inflater) begin(dict []byte, text bool, max int64) {
	c := w.inflCore
	c.fr, c.ring = w.fr, w.ring[:]
	c.dict, c.text, c.max = dict, text, max
	c.size, c.pos = 0, 0
	c.utf8.Reset()
	c.in, c.tail, c.last, c.abandon = nil, nil, false, false
}

// feed gives the decoder the next chunk of the message's payload (last:
// the message's final chunk) and runs it until the chunk is used up. It
// reports whether the deflate data ended (the message is complete and
// passed every check), or the violation found.
func (w *inflater) feed(p []byte, last bool) (done bool, err error) {
	c := w.inflCore
	c.in, c.last = p, last
	if last {
		c.tail = deflateTail[:]
	}
	st, ok := w.next()
	c.in = nil
	if !ok {
		return false, frame.ErrBadDeflate
	}
	switch st {
	case stMore:
		return false, nil
	case stDone:
		return true, nil
	case stTooBig:
		return false, frame.ErrMessageTooBig
	case stBadUTF8:
		return false, frame.ErrInvalidUTF8
	}
	return false, frame.ErrBadDeflate
}

// abandon makes the coroutine leave a message it is still inside, so the
// inflater can go back to the pool.
func (w *inflater) abandon() {
	c := w.inflCore
	if c.busy {
		c.abandon = true
		w.next()
	}
	c.in, c.tail, c.dict = nil, nil, nil
}

// saveDict returns the dictionary for the sender's next message: the last
// window bytes of everything inflated so far, that is of dict followed by
// this message's output (the last min(size, ringSize) bytes of which are
// in the ring, ending at pos). d grows (doubling) up to window as output
// accumulates, so a session that exchanged little holds little; once
// grown, it is reused: no allocation per message.
func (w *inflater) saveDict(d []byte, window int) []byte {
	c := w.inflCore
	n := int(min(c.size, int64(window)))
	if need := min(len(d)+n, window); cap(d) < need {
		grown := make([]byte, len(d), min(max(need, 2*cap(d), 512), window))
		copy(grown, d)
		d = grown
	}
	if keep := window - n; len(d) > keep {
		d = d[:copy(d, d[len(d)-keep:])]
	}
	if start := c.pos - n; start >= 0 {
		return append(d, w.ring[start:c.pos]...)
	} else {
		d = append(d, w.ring[len(w.ring)+start:]...)
	}
	return append(d, w.ring[:c.pos]...)
}

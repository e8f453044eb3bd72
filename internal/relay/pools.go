package relay

import (
	"bufio"
	"net"
	"sync"

	"wsgate/frame"
)

// smallFrame is the largest frame validated whole before it is forwarded
// (docs/relay.md): a violation inside it can still be answered with a
// clean close on the other side. Larger frames stream through.
const smallFrame = 16 << 10

// bufPool holds relay buffers: header room, then smallFrame bytes of payload.
// A pump takes one only while a payload is in flight, so an idle session
// holds none.
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, frame.MaxHeaderSize+smallFrame)
	return &b
}}

// smallPool holds buffers for a control frame whole (header room and the
// largest payload, 139 bytes) and for what is read after the close
// handshake only to be dropped (the leg's bufio.Reader still reads the
// socket 4 KiB at a time; data frames' payloads use bufPool, see skip). A handshake
// storm makes garbage fast and every collection empties the pools: taking
// a 16 KiB relay buffer for a Close then cost 16 KiB of fresh, zeroed
// memory, twice per session (BENCHMARKS.md "Performance, part 3").
var smallPool = sync.Pool{New: func() any {
	b := make([]byte, smallBuf)
	return &b
}}

const smallBuf = 256

// Large frames stream through a streamChunk buffer when one is free: each
// read and write then moves up to 256 KiB instead of 16 KiB, which cuts the
// gateway's CPU per MiB streamed by about a quarter (stream-large). At most
// maxStreamBufs are out at a time, so however many peers send large frames
// slowly, they pin at most maxStreamBufs × streamChunk (16 MiB); past that,
// frames stream through the 16 KiB relay buffer as before.
const (
	streamChunk   = 256 << 10
	maxStreamBufs = 64
)

var (
	streamPool = sync.Pool{New: func() any {
		b := make([]byte, frame.MaxHeaderSize+streamChunk)
		return &b
	}}
	streamBufs = make(chan struct{}, maxStreamBufs)
)

// getStreamBuf returns a large stream buffer, or nil if maxStreamBufs are
// out.
func getStreamBuf() *[]byte {
	select {
	case streamBufs <- struct{}{}:
		return streamPool.Get().(*[]byte)
	default:
		return nil
	}
}

func putStreamBuf(b *[]byte) {
	streamPool.Put(b)
	<-streamBufs
}

// pendMax bounds a batch of coalesced frames.
const pendMax = 32 << 10

var pendPool = sync.Pool{New: func() any {
	b := make([]byte, 0, pendMax)
	return &b
}}

// readerSize is a relay read buffer's size.
const readerSize = 4096

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readerSize) }}

func getReader(c net.Conn) *bufio.Reader {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(c)
	return br
}

func putReader(br *bufio.Reader) {
	br.Reset(nil)
	readerPool.Put(br)
}

// TakeStreamBufs takes every large stream buffer that is free and returns
// how many it took and a func that puts them back. For tests that need the
// relay to run out of them (frames then stream 16 KiB at a time).
func TakeStreamBufs() (n int, release func()) {
	var held []*[]byte
	for range 2 * maxStreamBufs {
		b := getStreamBuf()
		if b == nil {
			break
		}
		held = append(held, b)
	}
	return len(held), func() {
		for _, b := range held {
			putStreamBuf(b)
		}
	}
}

// MaxStreamBufs is how many large stream buffers may be out at a time.
const MaxStreamBufs = maxStreamBufs

// A control frame fits a small buffer whole.
var _ [smallBuf - frame.MaxHeaderSize - frame.MaxControlPayload]struct{}

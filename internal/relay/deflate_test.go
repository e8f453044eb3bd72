package relay

import (
	"bytes"
	stdflate "compress/flate"
	"math/rand/v2"
	"testing"

	"wsgate/frame"
)

// TestInflaterContextTakeover: messages compressed by one compressor that
// keeps its window (context takeover) inflate message by message with the
// dictionary saveDict keeps, which is always the last window bytes of all
// output; without it, they refer to data the inflater does not have.
func TestInflaterContextTakeover(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var all []byte
	var buf bytes.Buffer
	fw, _ := stdflate.NewWriter(&buf, 6)
	const window = 1 << 15
	w := newInflater()
	defer w.stop()
	var dict []byte
	for i := range 200 {
		// Messages repeat earlier ones, from up to 64 KiB back.
		n := 1 + rng.IntN(3000)
		if i%50 == 49 {
			n = 40000 // more than a window at once
		}
		msg := make([]byte, n)
		for j := range msg {
			if len(all) > 0 && rng.IntN(4) > 0 {
				msg[j] = all[rng.IntN(len(all))]
			} else {
				msg[j] = 'a' + byte(rng.IntN(26))
			}
		}
		if len(all) > 100 && n > 100 {
			k := rng.IntN(len(all) - 50)
			copy(msg, all[k:k+50])
		}
		buf.Reset()
		fw.Write(msg)
		fw.Flush()
		z := bytes.TrimSuffix(buf.Bytes(), []byte{0, 0, 0xff, 0xff})
		all = append(all, msg...)

		w.begin(dict, false, 1<<30)
		// Fed in pieces, as frames of a fragmented message would be.
		var done bool
		var err error
		for len(z) > 0 {
			k := min(len(z), 1+rng.IntN(700))
			done, err = w.feed(z[:k], k == len(z))
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			z = z[k:]
		}
		if !done || w.size != int64(n) {
			t.Fatalf("message %d: done %v, size %d of %d", i, done, w.size, n)
		}
		dict = w.saveDict(dict, window)
		want := all[max(0, len(all)-window):]
		if !bytes.Equal(dict, want) || cap(dict) > window {
			t.Fatalf("message %d: dictionary of %d bytes (cap %d), want the last %d of the output", i, len(dict), cap(dict), len(want))
		}
	}

	// The last message again, without the dictionary: it does not inflate
	// (or not to the same bytes).
	buf.Reset()
	msg := all[len(all)-2000:]
	fw.Write(msg)
	fw.Flush()
	w.begin(nil, false, 1<<30)
	done, err := w.feed(bytes.TrimSuffix(buf.Bytes(), []byte{0, 0, 0xff, 0xff}), true)
	if err == nil && done {
		t.Fatalf("a message that refers to earlier ones inflated without the dictionary")
	}
	if err != frame.ErrBadDeflate {
		t.Fatalf("err %v, want ErrBadDeflate", err)
	}
}

// TestInflaterChecks: the cap is enforced while inflating, text must be
// UTF-8 once inflated, and an abandoned message leaves the inflater ready
// for the next.
func TestInflaterChecks(t *testing.T) {
	w := newInflater()
	defer w.stop()
	z := compressMsg(t, bytes.Repeat([]byte("x"), 100000))
	w.begin(nil, true, 50000)
	if _, err := w.feed(z, true); err != frame.ErrMessageTooBig {
		t.Fatalf("over the cap: %v", err)
	}
	if w.size > 50000+ringSize/2 {
		t.Fatalf("inflated %d bytes past a cap of 50000", w.size)
	}
	w.begin(nil, true, 0)
	if _, err := w.feed(compressMsg(t, []byte("ok \xff")), true); err != frame.ErrInvalidUTF8 {
		t.Fatalf("bad UTF-8: %v", err)
	}
	// A message abandoned half-way.
	z = compressMsg(t, benchText(20000))
	w.begin(nil, true, 0)
	if done, err := w.feed(z[:len(z)/2], false); done || err != nil {
		t.Fatalf("first half: %v %v", done, err)
	}
	w.abandon()
	w.begin(nil, true, 0)
	if done, err := w.feed(z, true); !done || err != nil || w.size != 20000 {
		t.Fatalf("after abandon: %v %v %d", done, err, w.size)
	}
}

package frame_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"

	"wsgate/frame"
)

type H = frame.Header

var rfcKey = [4]byte{0x37, 0xfa, 0x21, 0x3d} // the masking key of RFC 6455 §5.7

type headerCase struct {
	name  string // starts with the RFC section it checks
	wire  string // for bits()
	rules frame.Rules
	want  H
	n     int
	err   error
}

var (
	client = frame.Rules{Sender: frame.FromClient}
	server = frame.Rules{Sender: frame.FromServer}
)

func headerCases() []headerCase {
	cs := []headerCase{
		// §5.2 base framing: FIN, opcode, MASK, payload len.
		{name: "§5.2 text fin len7=5", wire: "1000 0001  0000 0101",
			want: H{Fin: true, Opcode: frame.OpText, Length: 5}, n: 2},
		{name: "§5.2 binary no fin len0", wire: "0000 0010  0000 0000",
			want: H{Opcode: frame.OpBinary}, n: 2},
		{name: "§5.2 continuation fin", wire: "1000 0000  0000 0010",
			want: H{Fin: true, Opcode: frame.OpContinuation, Length: 2}, n: 2},
		{name: "§5.2 continuation no fin", wire: "0000 0000  0000 0001",
			want: H{Opcode: frame.OpContinuation, Length: 1}, n: 2},
		{name: "§5.2 close", wire: "1000 1000  0000 0010",
			want: H{Fin: true, Opcode: frame.OpClose, Length: 2}, n: 2},
		{name: "§5.2 ping", wire: "1000 1001  0000 0000",
			want: H{Fin: true, Opcode: frame.OpPing}, n: 2},
		{name: "§5.2 pong", wire: "1000 1010  0000 0101",
			want: H{Fin: true, Opcode: frame.OpPong, Length: 5}, n: 2},
		{name: "§5.2 len7 max 125", wire: "1000 0010  0111 1101",
			want: H{Fin: true, Opcode: frame.OpBinary, Length: 125}, n: 2},
		{name: "§5.2 len16 min 126", wire: "1000 0010  0111 1110  0x007e",
			want: H{Fin: true, Opcode: frame.OpBinary, Length: 126}, n: 4},
		{name: "§5.2 len16 127", wire: "1000 0010  0111 1110  0x007f",
			want: H{Fin: true, Opcode: frame.OpBinary, Length: 127}, n: 4},
		{name: "§5.2 len16 max 65535", wire: "1000 0010  0111 1110  0xffff",
			want: H{Fin: true, Opcode: frame.OpBinary, Length: 65535}, n: 4},
		{name: "§5.2 len64 min 65536", wire: "1000 0010  0111 1111  0x0000000000010000",
			want: H{Fin: true, Opcode: frame.OpBinary, Length: 65536}, n: 10},
		{name: "§5.2 len64 2^32", wire: "1000 0010  0111 1111  0x0000000100000000",
			want: H{Fin: true, Opcode: frame.OpBinary, Length: 1 << 32}, n: 10},
		{name: "§5.2 len64 max 2^63-1", wire: "0000 0010  0111 1111  0x7fffffffffffffff",
			want: H{Opcode: frame.OpBinary, Length: 1<<63 - 1}, n: 10},
		{name: "§5.2 masked len7", wire: "1000 0001  1000 0101  0x37fa213d", rules: client,
			want: H{Fin: true, Opcode: frame.OpText, Masked: true, Key: rfcKey, Length: 5}, n: 6},
		{name: "§5.2 masked len16", wire: "1000 0010  1111 1110  0x0100  0xa1b2c3d4", rules: client,
			want: H{Fin: true, Opcode: frame.OpBinary, Masked: true, Key: [4]byte{0xa1, 0xb2, 0xc3, 0xd4}, Length: 256}, n: 8},
		{name: "§5.2 masked len64", wire: "1000 0010  1111 1111  0x0000000000010000  0x01020304", rules: client,
			want: H{Fin: true, Opcode: frame.OpBinary, Masked: true, Key: [4]byte{1, 2, 3, 4}, Length: 65536}, n: 14},
		{name: "§5.2 rsv1 negotiated", wire: "1100 0001  0000 0011", rules: frame.Rules{AllowRsv: frame.Rsv1},
			want: H{Fin: true, Rsv: frame.Rsv1, Opcode: frame.OpText, Length: 3}, n: 2},
		{name: "§5.2 rsv2 negotiated", wire: "1010 0001  0000 0000", rules: frame.Rules{AllowRsv: frame.Rsv2},
			want: H{Fin: true, Rsv: frame.Rsv2, Opcode: frame.OpText}, n: 2},
		{name: "§5.2 rsv1-3 negotiated", wire: "0111 0010  0000 0000", rules: frame.Rules{AllowRsv: frame.Rsv1 | frame.Rsv2 | frame.Rsv3},
			want: H{Rsv: 7, Opcode: frame.OpBinary}, n: 2},

		// §5.2: "the most significant bit MUST be 0".
		{name: "§5.2 len64 top bit", wire: "1000 0010  0111 1111  0x8000000000000000", err: frame.ErrLengthTopBit},
		{name: "§5.2 len64 all ones", wire: "1000 0010  0111 1111  0xffffffffffffffff", err: frame.ErrLengthTopBit},
		{name: "§5.2 len64 top bit masked", wire: "1000 0010  1111 1111  0x8000000000010000  0x01020304", rules: client, err: frame.ErrLengthTopBit},
		// §5.2: "the minimal number of bytes MUST be used to encode the length".
		{name: "§5.2 len16 non-minimal 125", wire: "1000 0010  0111 1110  0x007d", err: frame.ErrNonMinimalLength},
		{name: "§5.2 len16 non-minimal 0", wire: "1000 0010  0111 1110  0x0000", err: frame.ErrNonMinimalLength},
		{name: "§5.2 len64 non-minimal 65535", wire: "1000 0010  0111 1111  0x000000000000ffff", err: frame.ErrNonMinimalLength},
		{name: "§5.2 len64 non-minimal 126", wire: "1000 0010  0111 1111  0x000000000000007e", err: frame.ErrNonMinimalLength},
		{name: "§5.2 len64 non-minimal 0", wire: "1000 0010  0111 1111  0x0000000000000000", err: frame.ErrNonMinimalLength},
		{name: "§5.2 len64 non-minimal masked", wire: "1000 0010  1111 1111  0x0000000000000005  0x01020304", rules: client, err: frame.ErrNonMinimalLength},

		// §5.5: control frames "MUST have a payload length of 125 bytes or
		// less and MUST NOT be fragmented".
		{name: "§5.5 close without fin", wire: "0000 1000  0000 0000", err: frame.ErrControlFragmented},
		{name: "§5.5 ping without fin", wire: "0000 1001  0000 0101", err: frame.ErrControlFragmented},
		{name: "§5.5 pong without fin", wire: "0000 1010  0000 0000", err: frame.ErrControlFragmented},
		{name: "§5.5 ping len 125", wire: "1000 1001  0111 1101",
			want: H{Fin: true, Opcode: frame.OpPing, Length: 125}, n: 2},
		{name: "§5.5 ping len 126", wire: "1000 1001  0111 1110  0x007e", err: frame.ErrControlTooLong},
		{name: "§5.5 close len 65535", wire: "1000 1000  0111 1110  0xffff", err: frame.ErrControlTooLong},
		{name: "§5.5 pong len 2^16", wire: "1000 1010  0111 1111  0x0000000000010000", err: frame.ErrControlTooLong},

		// §5.2: "MUST be 0 unless an extension is negotiated that defines
		// meanings for non-zero values".
		{name: "§5.2 rsv1 not negotiated", wire: "1100 0001  0000 0000", err: frame.ErrReservedBits},
		{name: "§5.2 rsv2 not negotiated", wire: "1010 0001  0000 0000", err: frame.ErrReservedBits},
		{name: "§5.2 rsv3 not negotiated", wire: "1001 0001  0000 0000", err: frame.ErrReservedBits},
		{name: "§5.2 rsv2 with only rsv1 negotiated", wire: "1010 0001  0000 0000",
			rules: frame.Rules{AllowRsv: frame.Rsv1}, err: frame.ErrReservedBits},
		{name: "§5.2 rsv1+3 with only rsv1 negotiated", wire: "1101 0001  0000 0000",
			rules: frame.Rules{AllowRsv: frame.Rsv1}, err: frame.ErrReservedBits},
		{name: "§5.2 rsv1 on control frame not negotiated", wire: "1100 1001  0000 0000", err: frame.ErrReservedBits},

		// §5.1: a client masks every frame; a server masks none.
		{name: "§5.1 client frame unmasked", wire: "1000 0001  0000 0101", rules: client, err: frame.ErrUnmasked},
		{name: "§5.1 client close unmasked", wire: "1000 1000  0000 0000", rules: client, err: frame.ErrUnmasked},
		{name: "§5.1 server frame masked", wire: "1000 0001  1000 0101  0x37fa213d", rules: server, err: frame.ErrMasked},
		{name: "§5.1 server ping masked", wire: "1000 1001  1000 0000  0x00000000", rules: server, err: frame.ErrMasked},
		{name: "§5.1 server frame unmasked", wire: "1000 0001  0000 0101", rules: server,
			want: H{Fin: true, Opcode: frame.OpText, Length: 5}, n: 2},
		{name: "§5.1 any sender masked", wire: "1000 0001  1000 0101  0x37fa213d",
			want: H{Fin: true, Opcode: frame.OpText, Masked: true, Key: rfcKey, Length: 5}, n: 6},

		// §10.4: "an implementation SHOULD impose a limit on frame sizes".
		{name: "§10.4 at MaxPayload", wire: "1000 0010  0111 1110  0x0100", rules: frame.Rules{MaxPayload: 256},
			want: H{Fin: true, Opcode: frame.OpBinary, Length: 256}, n: 4},
		{name: "§10.4 over MaxPayload", wire: "1000 0010  0111 1110  0x0101", rules: frame.Rules{MaxPayload: 256}, err: frame.ErrFrameTooBig},
		{name: "§10.4 len64 over MaxPayload", wire: "1000 0010  0111 1111  0x4000000000000000",
			rules: frame.Rules{MaxPayload: 1 << 20}, err: frame.ErrFrameTooBig},
		{name: "§10.4 max len64 with MaxPayload 2^63-1", wire: "1000 0010  0111 1111  0x7fffffffffffffff",
			rules: frame.Rules{MaxPayload: 1<<63 - 1}, want: H{Fin: true, Opcode: frame.OpBinary, Length: 1<<63 - 1}, n: 10},
		{name: "§10.4 masked over MaxPayload", wire: "1000 0001  1000 0110  0x01020304",
			rules: frame.Rules{Sender: frame.FromClient, MaxPayload: 5}, err: frame.ErrFrameTooBig},
		{name: "§10.4 ping over MaxPayload", wire: "1000 1001  0000 1010", rules: frame.Rules{MaxPayload: 5}, err: frame.ErrFrameTooBig},
	}
	// §5.2: opcodes 0x3-0x7 are reserved for further non-control frames,
	// 0xB-0xF for further control frames.
	for _, op := range []int{3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF} {
		cs = append(cs,
			headerCase{name: fmt.Sprintf("§5.2 reserved opcode %#x", op),
				wire: fmt.Sprintf("1000 %04b  0000 0000", op), err: frame.ErrReservedOpcode},
			headerCase{name: fmt.Sprintf("§5.2 reserved opcode %#x masked no fin", op),
				wire: fmt.Sprintf("0000 %04b  1000 0001  0xdeadbeef", op), rules: client, err: frame.ErrReservedOpcode})
	}
	return cs
}

func TestDecodeHeader(t *testing.T) {
	t.Parallel()
	for _, c := range headerCases() {
		t.Run(c.name, func(t *testing.T) {
			b := bits(c.wire)
			h, n, err := frame.DecodeHeader(b, c.rules)
			if err != c.err {
				t.Fatalf("DecodeHeader(%s) error = %v, want %v", c.wire, err, c.err)
			}
			if err != nil {
				checkCode(t, err)
				// A violation still reports the header's size, so a
				// reader draining after its Close can step over it.
				if n != len(b) {
					t.Errorf("n = %d on a violation, want %d", n, len(b))
				}
				// Unless the length encoding was the violation, the
				// header decoded is the one on the wire.
				if err != frame.ErrNonMinimalLength && err != frame.ErrLengthTopBit {
					if got := frame.AppendHeader(nil, h); !bytes.Equal(got, b) {
						t.Errorf("violating header decoded as %+v, which encodes to % x", h, got)
					}
				}
				return
			}
			if h != c.want || n != c.n {
				t.Errorf("DecodeHeader(%s) = %+v, %d; want %+v, %d", c.wire, h, n, c.want, c.n)
			}
			if n != len(b) {
				t.Errorf("consumed %d of %d bytes", n, len(b))
			}
			if h.Size() != n {
				t.Errorf("Size() = %d, want %d", h.Size(), n)
			}
			// Bytes after the header are the payload's, not the header's.
			h2, n2, err := frame.DecodeHeader(append(b, 0xff, 0x00, 0x81), c.rules)
			if err != nil || h2 != h || n2 != n {
				t.Errorf("with trailing bytes: %+v, %d, %v", h2, n2, err)
			}
		})
	}
}

func TestReadHeaderTable(t *testing.T) {
	t.Parallel()
	for _, c := range headerCases() {
		t.Run(c.name, func(t *testing.T) {
			payload := []byte("after")
			br := bufio.NewReader(bytes.NewReader(append(bits(c.wire), payload...)))
			h, err := frame.ReadHeader(br, c.rules)
			if err != c.err {
				t.Fatalf("ReadHeader error = %v, want %v", err, c.err)
			}
			want := c.want
			if err != nil { // the header as DecodeHeader sees it
				want, _, _ = frame.DecodeHeader(bits(c.wire), c.rules)
			}
			if h != want {
				t.Errorf("ReadHeader = %+v, want %+v", h, want)
			}
			// The header is consumed, a violating one too.
			rest, _ := io.ReadAll(br)
			if string(rest) != string(payload) {
				t.Errorf("left %q in the reader, want %q", rest, payload)
			}
		})
	}
}

// validHeaders are headers of every shape: each length encoding, masked or
// not, for the prefix tests.
var validHeaders = []string{
	"1000 0001  0000 0101",
	"1000 0001  1000 0101  0x37fa213d",
	"1000 0010  0111 1110  0x0100",
	"1000 0010  1111 1110  0x0100  0x01020304",
	"1000 0010  0111 1111  0x0000000000010000",
	"1000 0010  1111 1111  0x0000000000010000  0x01020304",
	"1000 1000  1000 0000  0xffffffff",
}

// §5.2: a header cut short is not an error yet, only not enough bytes.
func TestDecodeHeaderShort(t *testing.T) {
	t.Parallel()
	for _, w := range validHeaders {
		b := bits(w)
		for i := range len(b) {
			_, n, err := frame.DecodeHeader(b[:i], frame.Rules{})
			if err != frame.ErrShortHeader || n != 0 {
				t.Errorf("DecodeHeader(% x) = %d, %v; want 0, ErrShortHeader", b[:i], n, err)
			}
		}
		if _, n, err := frame.DecodeHeader(b, frame.Rules{}); err != nil || n != len(b) {
			t.Errorf("DecodeHeader(% x) = %d, %v; want %d, nil", b, n, err, len(b))
		}
	}
	if _, ok := frame.CodeOf(frame.ErrShortHeader); ok {
		t.Error("ErrShortHeader carries a close code; it is not a violation")
	}
}

// A length-encoding violation still yields the header's size on the wire
// and the rest of the header, so the frame can be stepped over.
func TestDecodeHeaderLengthViolation(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		wire string
		want H
		err  error
	}{
		{"§5.2 len16 non-minimal", "1000 0010  0111 1110  0x007d",
			H{Fin: true, Opcode: frame.OpBinary, Length: 125}, frame.ErrNonMinimalLength},
		{"§5.2 len64 non-minimal masked", "0000 0001  1111 1111  0x000000000000ffff  0x01020304",
			H{Opcode: frame.OpText, Masked: true, Key: [4]byte{1, 2, 3, 4}, Length: 65535}, frame.ErrNonMinimalLength},
		{"§5.2 len64 top bit masked", "1000 0010  1111 1111  0x8000000000010000  0x01020304",
			H{Fin: true, Opcode: frame.OpBinary, Masked: true, Key: [4]byte{1, 2, 3, 4}, Length: 65536}, frame.ErrLengthTopBit},
		{"§5.2 len64 top bit only", "1000 0010  0111 1111  0x8000000000000000",
			H{Fin: true, Opcode: frame.OpBinary}, frame.ErrLengthTopBit},
	} {
		b := bits(c.wire)
		h, n, err := frame.DecodeHeader(append(b, "payload"...), client)
		if err != c.err || h != c.want || n != len(b) {
			t.Errorf("%s: DecodeHeader = %+v, %d, %v; want %+v, %d, %v", c.name, h, n, err, c.want, len(b), c.err)
		}
	}
}

func TestReadHeaderEOF(t *testing.T) {
	t.Parallel()
	_, err := frame.ReadHeader(bufio.NewReader(bytes.NewReader(nil)), frame.Rules{})
	if err != io.EOF {
		t.Errorf("empty input: %v, want io.EOF", err)
	}
	for _, w := range validHeaders {
		b := bits(w)
		for i := 1; i < len(b); i++ {
			_, err := frame.ReadHeader(bufio.NewReader(bytes.NewReader(b[:i])), frame.Rules{})
			if err != io.ErrUnexpectedEOF {
				t.Errorf("ReadHeader(% x) error = %v, want io.ErrUnexpectedEOF", b[:i], err)
			}
		}
	}
}

func TestReadHeaderStream(t *testing.T) {
	t.Parallel()
	// The fragmented message of RFC 6455 §5.7 with a ping in between, fed
	// one byte per Read so that every header straddles refills, through the
	// smallest buffer bufio allows.
	wire := bits("0x01 0x03 0x48 0x65 0x6c  0x89 0x00  0x80 0x02 0x6c 0x6f")
	br := bufio.NewReaderSize(iotest.OneByteReader(bytes.NewReader(wire)), 16)
	var got []string
	for {
		h, err := frame.ReadHeader(br, server)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(br, p); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%v:%v:%s", h.Opcode, h.Fin, p))
	}
	want := "[text:false:Hel ping:true: continuation:true:lo]"
	if fmt.Sprint(got) != want {
		t.Errorf("got %v, want %v", got, want)
	}

	// A 14-byte header through a 16-byte buffer, one byte at a time.
	b := append(bits(validHeaders[5]), 'x')
	br = bufio.NewReaderSize(iotest.OneByteReader(bytes.NewReader(b)), 16)
	h, err := frame.ReadHeader(br, client)
	if err != nil || h.Length != 65536 || h.Key != [4]byte{1, 2, 3, 4} {
		t.Errorf("ReadHeader = %+v, %v", h, err)
	}
	if c, err := br.ReadByte(); c != 'x' || err != nil {
		t.Errorf("next byte %q, %v; want 'x'", c, err)
	}
}

func TestReadHeaderReaderError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	for _, w := range validHeaders {
		b := bits(w)
		for i := range len(b) {
			r := io.MultiReader(bytes.NewReader(b[:i]), iotest.ErrReader(boom))
			_, err := frame.ReadHeader(bufio.NewReader(r), frame.Rules{})
			if err != boom {
				t.Errorf("after % x: error %v, want the reader's", b[:i], err)
			}
		}
	}
}

// §5.2: "The length of the payload data [...] the minimal number of bytes
// MUST be used to encode the length". Expected encodings are written out.
func TestPutHeaderMinimal(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		length int64
		enc    string // the length byte(s); the mask bit is ORed in for masked headers
	}{
		{0, "0x00"},
		{1, "0x01"},
		{125, "0x7d"},
		{126, "0x7e 0x007e"},
		{127, "0x7e 0x007f"},
		{65535, "0x7e 0xffff"},
		{65536, "0x7f 0x0000000000010000"},
		{1 << 32, "0x7f 0x0000000100000000"},
		{1 << 62, "0x7f 0x4000000000000000"},
		{1<<63 - 1, "0x7f 0x7fffffffffffffff"},
	} {
		for _, masked := range []bool{false, true} {
			t.Run(fmt.Sprintf("§5.2 len=%d masked=%v", c.length, masked), func(t *testing.T) {
				h := H{Fin: true, Opcode: frame.OpBinary, Length: c.length}
				want := append([]byte{0x82}, bits(c.enc)...)
				if masked {
					h.Masked, h.Key = true, [4]byte{0xde, 0xad, 0xbe, 0xef}
					want[1] |= 0x80
					want = append(want, 0xde, 0xad, 0xbe, 0xef)
				}
				var buf [frame.MaxHeaderSize]byte
				n := frame.PutHeader(buf[:], h)
				if !bytes.Equal(buf[:n], want) {
					t.Errorf("PutHeader = % x, want % x", buf[:n], want)
				}
				if h.Size() != len(want) {
					t.Errorf("Size() = %d, want %d", h.Size(), len(want))
				}
				// PutHeader fits a buffer of exactly h.Size().
				exact := make([]byte, h.Size())
				if n := frame.PutHeader(exact, h); n != len(want) || !bytes.Equal(exact, want) {
					t.Errorf("PutHeader(exact) = % x", exact[:n])
				}
				got := frame.AppendHeader([]byte("pre"), h)
				if string(got) != "pre"+string(want) {
					t.Errorf("AppendHeader = % x, want pre + % x", got, want)
				}
				back, bn, err := frame.DecodeHeader(want, frame.Rules{})
				if err != nil || back != h || bn != len(want) {
					t.Errorf("DecodeHeader(PutHeader(h)) = %+v, %d, %v; want %+v", back, bn, err, h)
				}
			})
		}
	}
}

// Every combination of FIN, RSV and defined opcode survives a round trip.
func TestHeaderRoundTrip(t *testing.T) {
	t.Parallel()
	ops := []frame.Opcode{frame.OpContinuation, frame.OpText, frame.OpBinary, frame.OpClose, frame.OpPing, frame.OpPong}
	for _, op := range ops {
		for rsv := range uint8(8) {
			for _, fin := range []bool{false, true} {
				if op.IsControl() && !fin {
					continue
				}
				for _, length := range []int64{0, 1, 125, 126, 65535, 65536, 1 << 40} {
					if op.IsControl() && length > 125 {
						continue
					}
					for _, masked := range []bool{false, true} {
						h := H{Fin: fin, Rsv: rsv, Opcode: op, Masked: masked, Length: length}
						if masked {
							h.Key = [4]byte{byte(rsv), 0x5a, byte(op), 0xa5}
						}
						b := frame.AppendHeader(nil, h)
						got, n, err := frame.DecodeHeader(b, frame.Rules{AllowRsv: 7})
						if err != nil || got != h || n != len(b) || n != h.Size() {
							t.Errorf("%+v: decoded %+v, %d, %v from % x", h, got, n, err, b)
						}
					}
				}
			}
		}
	}
}

// The examples of RFC 6455 §5.7, decoded and encoded.
func TestRFCExamples(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		wire    string
		payload []byte
		want    H
	}{
		{"single-frame unmasked text", "0x81 0x05 0x48 0x65 0x6c 0x6c 0x6f", []byte("Hello"),
			H{Fin: true, Opcode: frame.OpText, Length: 5}},
		{"single-frame masked text", "0x81 0x85 0x37 0xfa 0x21 0x3d 0x7f 0x9f 0x4d 0x51 0x58", []byte("Hello"),
			H{Fin: true, Opcode: frame.OpText, Masked: true, Key: rfcKey, Length: 5}},
		{"fragmented text, first", "0x01 0x03 0x48 0x65 0x6c", []byte("Hel"),
			H{Opcode: frame.OpText, Length: 3}},
		{"fragmented text, last", "0x80 0x02 0x6c 0x6f", []byte("lo"),
			H{Fin: true, Opcode: frame.OpContinuation, Length: 2}},
		{"unmasked ping", "0x89 0x05 0x48 0x65 0x6c 0x6c 0x6f", []byte("Hello"),
			H{Fin: true, Opcode: frame.OpPing, Length: 5}},
		{"masked pong", "0x8a 0x85 0x37 0xfa 0x21 0x3d 0x7f 0x9f 0x4d 0x51 0x58", []byte("Hello"),
			H{Fin: true, Opcode: frame.OpPong, Masked: true, Key: rfcKey, Length: 5}},
		{"256 bytes binary", "0x82 0x7E 0x0100", pattern(256),
			H{Fin: true, Opcode: frame.OpBinary, Length: 256}},
		{"64KiB binary", "0x82 0x7F 0x0000000000010000", pattern(65536),
			H{Fin: true, Opcode: frame.OpBinary, Length: 65536}},
	} {
		t.Run("§5.7 "+c.name, func(t *testing.T) {
			wire := bits(c.wire)
			if len(wire) == c.want.Size() { // header-only examples: append the data
				wire = append(wire, c.payload...)
			}
			h, n, err := frame.DecodeHeader(wire, frame.Rules{})
			if err != nil || h != c.want || n != c.want.Size() {
				t.Fatalf("DecodeHeader = %+v, %d, %v; want %+v", h, n, err, c.want)
			}
			p := bytes.Clone(wire[n:])
			if int64(len(p)) != h.Length {
				t.Fatalf("payload %d bytes, header says %d", len(p), h.Length)
			}
			if h.Masked {
				frame.Mask(h.Key, 0, p)
			}
			if !bytes.Equal(p, c.payload) {
				t.Errorf("payload = %q, want %q", p, c.payload)
			}
			payload := bytes.Clone(c.payload)
			if got := frame.AppendFrame(nil, h, payload); !bytes.Equal(got, wire) {
				t.Errorf("AppendFrame = % x, want % x", got, wire)
			}
			if !bytes.Equal(payload, c.payload) {
				t.Error("AppendFrame modified its payload argument")
			}
			var hb [frame.MaxHeaderSize]byte
			if n := frame.PutHeader(hb[:], h); !bytes.Equal(hb[:n], wire[:h.Size()]) {
				t.Errorf("PutHeader = % x, want % x", hb[:n], wire[:h.Size()])
			}
		})
	}
}

// AppendFrame takes the length from the payload, not from h.
func TestAppendFrameLength(t *testing.T) {
	t.Parallel()
	got := frame.AppendFrame([]byte{0xaa}, H{Fin: true, Opcode: frame.OpClose, Length: 999}, []byte{0x03, 0xe8})
	if want := bits("0xaa 0x88 0x02 0x03e8"); !bytes.Equal(got, want) {
		t.Errorf("AppendFrame = % x, want % x", got, want)
	}
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

// violations lists the errors h breaks under r among the checks Rules adds
// on top of the structural ones (§5.1 masking, §5.2 RSV, frame size cap).
func violations(h H, r frame.Rules) []error {
	var errs []error
	if h.Rsv&^r.AllowRsv != 0 {
		errs = append(errs, frame.ErrReservedBits)
	}
	if r.Sender == frame.FromClient && !h.Masked {
		errs = append(errs, frame.ErrUnmasked)
	}
	if r.Sender == frame.FromServer && h.Masked {
		errs = append(errs, frame.ErrMasked)
	}
	if r.MaxPayload > 0 && h.Length > r.MaxPayload {
		errs = append(errs, frame.ErrFrameTooBig)
	}
	return errs
}

func isOneOf(err error, errs []error) bool {
	for _, e := range errs {
		if err == e {
			return true
		}
	}
	return false
}

func FuzzDecodeHeader(f *testing.F) {
	for _, w := range []string{
		"0x81 0x05 0x48 0x65 0x6c 0x6c 0x6f",
		"0x81 0x85 0x37 0xfa 0x21 0x3d 0x7f 0x9f 0x4d 0x51 0x58",
		"0x01 0x03 0x48 0x65 0x6c",
		"0x80 0x02 0x6c 0x6f",
		"0x89 0x05 0x48 0x65 0x6c 0x6c 0x6f",
		"0x8a 0x85 0x37 0xfa 0x21 0x3d 0x7f 0x9f 0x4d 0x51 0x58",
		"0x82 0x7E 0x0100",
		"0x82 0x7F 0x0000000000010000",
		"0x82 0xff 0x7fffffffffffffff 0x01020304",
		"0x82 0x7f 0x8000000000000000",
		"0x82 0x7e 0x007d",
		"0x82 0x7f 0x000000000000ffff",
		"0x08 0x00", "0x89 0x7e 0x007e", "0xc1 0x00", "0x83 0x00", "0x8f 0x80 0x00000000",
		"", "0x81", "0x81 0xfe 0x01", "0xff 0xff",
	} {
		b := bits(w)
		f.Add(b, uint8(frame.AnySender), uint8(0), int64(0))
		f.Add(b, uint8(frame.FromClient), uint8(frame.Rsv1), int64(1<<20))
		f.Add(b, uint8(frame.FromServer), uint8(7), int64(125))
	}
	f.Fuzz(func(t *testing.T, data []byte, sender, allowRsv uint8, maxPayload int64) {
		r := frame.Rules{Sender: frame.Sender(sender % 3), AllowRsv: allowRsv & 7, MaxPayload: maxPayload}
		h, n, err := frame.DecodeHeader(data, r)
		// The structural checks alone, to predict what r adds.
		base, bn, berr := frame.DecodeHeader(data, frame.Rules{AllowRsv: 7})
		switch berr {
		case nil:
			if v := violations(base, r); len(v) > 0 {
				if !isOneOf(err, v) {
					t.Fatalf("error %v, want one of %v", err, v)
				}
			} else if err != nil || h != base || n != bn {
				t.Fatalf("got %+v, %d, %v; structural decode %+v, %d", h, n, err, base, bn)
			}
		case frame.ErrShortHeader, frame.ErrLengthTopBit, frame.ErrNonMinimalLength:
			if err != berr {
				t.Fatalf("error %v, want %v", err, berr)
			}
		default:
			if err != berr && !isOneOf(err, violations(base, r)) {
				t.Fatalf("error %v, want %v or a rule violation", err, berr)
			}
		}

		br := bufio.NewReader(bytes.NewReader(data))
		rh, rerr := frame.ReadHeader(br, r)
		if err == frame.ErrShortHeader {
			if n != 0 || h != (H{}) {
				t.Fatalf("ErrShortHeader with %+v, n = %d", h, n)
			}
			if want := io.ErrUnexpectedEOF; len(data) == 0 && rerr != io.EOF || len(data) > 0 && rerr != want {
				t.Fatalf("ReadHeader error %v on %d bytes", rerr, len(data))
			}
			return
		}
		// A violation comes with the header's wire size; ReadHeader
		// consumes exactly that.
		if n < 2 || n > len(data) || n > frame.MaxHeaderSize {
			t.Fatalf("n = %d for %d bytes, error %v", n, len(data), err)
		}
		if rest, _ := io.ReadAll(br); rerr != err || rh != h || !bytes.Equal(rest, data[n:]) {
			t.Fatalf("ReadHeader = %+v, %v leaving %d bytes; DecodeHeader %+v, %v, n = %d of %d",
				rh, rerr, len(rest), h, err, n, len(data))
		}
		if h.Length < 0 {
			t.Fatalf("negative length %d", h.Length)
		}
		if err != nil {
			checkCode(t, err)
			return
		}
		if n != h.Size() || n > len(data) {
			t.Fatalf("n = %d, Size() = %d, len(data) = %d", n, h.Size(), len(data))
		}
		var buf [frame.MaxHeaderSize]byte
		if m := frame.PutHeader(buf[:], h); !bytes.Equal(buf[:m], data[:n]) {
			t.Fatalf("PutHeader(%+v) = % x, decoded from % x", h, buf[:m], data[:n])
		}
		if h.Opcode.IsReserved() || h.Opcode.IsControl() && (!h.Fin || h.Length > 125) {
			t.Fatalf("accepted %+v", h)
		}
	})
}

package frame_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"

	"wsgate/frame"
)

func ExampleMask() {
	// The masked "Hello" of RFC 6455 §5.7.
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	p := []byte("Hello")
	frame.Mask(key, 0, p)
	fmt.Printf("% x\n", p)

	// Unmask in two chunks, as they come off the wire: the position
	// returned by one call goes into the next.
	pos := frame.Mask(key, 0, p[:2])
	pos = frame.Mask(key, pos, p[2:])
	fmt.Println(string(p), pos)

	// Hand the payload on under a fresh key in one pass.
	frame.Mask(key, 0, p)
	next := [4]byte{1, 2, 3, 4}
	frame.Remask(key, next, 0, p)
	frame.Mask(next, 0, p)
	fmt.Println(string(p))
	// Output:
	// 7f 9f 4d 51 58
	// Hello 1
	// Hello
}

func ExampleReadHeader() {
	// The fragmented "Hello" of RFC 6455 §5.7 with a ping in between,
	// as a client reads it from a server.
	wire := []byte{
		0x01, 0x03, 'H', 'e', 'l',
		0x89, 0x00,
		0x80, 0x02, 'l', 'o',
	}
	br := bufio.NewReader(bytes.NewReader(wire))
	rules := frame.Rules{Sender: frame.FromServer, MaxPayload: 1 << 20}
	var msg frame.Message
	for {
		h, err := frame.ReadHeader(br, rules)
		if err != nil {
			fmt.Println(err)
			break
		}
		if err := msg.Next(h); err != nil {
			fmt.Println(err)
			break
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(br, p); err != nil {
			fmt.Println(err)
			break
		}
		if err := msg.Payload(p); err != nil {
			fmt.Println(err)
			break
		}
		if err := msg.EndFrame(); err != nil {
			fmt.Println(err)
			break
		}
		fmt.Printf("%-12v fin=%-5v %q in message: %v\n", h.Opcode, h.Fin, p, msg.InMessage())
	}
	// Output:
	// text         fin=false "Hel" in message: true
	// ping         fin=true  "" in message: true
	// continuation fin=true  "lo" in message: false
	// EOF
}

func ExampleParseClose() {
	code, reason, err := frame.ParseClose([]byte("\x03\xe9shutting down"))
	fmt.Println(int(code), code, string(reason), err)

	// 1005 means "no code" and must never be sent (RFC 6455 §7.4.1): the
	// peer committed a protocol error, and the error says which close code
	// to answer with.
	_, _, err = frame.ParseClose([]byte{0x03, 0xed})
	answer, _ := frame.CodeOf(err)
	fmt.Println(err, "->", int(answer))

	// Build the answer.
	fmt.Printf("% x\n", frame.AppendClose(nil, answer, "bad close code"))
	// Output:
	// 1001 going away shutting down <nil>
	// websocket: close code not allowed on the wire -> 1002
	// 03 ea 62 61 64 20 63 6c 6f 73 65 20 63 6f 64 65
}

package handshake

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// TestReadResponse is the parser's golden table: RFC 9112 §4 status line,
// §5 field lines, §2.2 line endings, §6.3 body length, RFC 9110 §15.2
// interim responses. rest is what must still be readable afterwards.
func TestReadResponse(t *testing.T) {
	t.Parallel()
	const ok101 = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
	cases := []struct {
		name      string
		in        string
		maxHeader int
		maxBody   int
		err       error
		status    int
		reason    string
		header    http.Header
		body      string
		rest      string
	}{
		{name: "101_leaves_frames_buffered", in: ok101 + "\x81\x02hi", status: 101, reason: "Switching Protocols",
			header: http.Header{"Upgrade": {"websocket"}}, rest: "\x81\x02hi"},
		{name: "bare_LF_RFC9112_2.2", in: "HTTP/1.1 101 OK\nUpgrade: websocket\n\nX", status: 101, reason: "OK",
			header: http.Header{"Upgrade": {"websocket"}}, rest: "X"},
		{name: "no_reason_RFC9112_4", in: "HTTP/1.1 101\r\n\r\n", status: 101, header: http.Header{}},
		{name: "empty_reason_RFC9112_4", in: "HTTP/1.1 101 \r\n\r\n", status: 101, header: http.Header{}},
		{name: "HTTP1.0", in: "HTTP/1.0 404 Not Found\r\nContent-Length: 3\r\n\r\nabcdef", status: 404, reason: "Not Found",
			header: http.Header{"Content-Length": {"3"}}, body: "abc", rest: "def"},
		{name: "obs_fold_RFC9112_5.2", in: "HTTP/1.1 101 S\r\nX-A: one\r\n  two\r\n\tthree\r\n\r\n", status: 101, reason: "S",
			header: http.Header{"X-A": {"one two three"}}},
		{name: "names_canonicalised_values_trimmed", in: "HTTP/1.1 101 S\r\nsec-websocket-accept:\t x \r\nx-a:\r\n\r\n", status: 101, reason: "S",
			header: http.Header{"Sec-Websocket-Accept": {"x"}, "X-A": {""}}},
		{name: "interim_1xx_skipped_RFC9110_15.2", in: "HTTP/1.1 100 Continue\r\nA: 1\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n" + ok101,
			status: 101, reason: "Switching Protocols", header: http.Header{"Upgrade": {"websocket"}}},
		{name: "204_has_no_body", in: "HTTP/1.1 204 No Content\r\n\r\nnext", status: 204, reason: "No Content", header: http.Header{}, rest: "next"},
		{name: "304_has_no_body", in: "HTTP/1.1 304 Not Modified\r\n\r\nnext", status: 304, reason: "Not Modified", header: http.Header{}, rest: "next"},
		{name: "content_length_bounds_body", in: "HTTP/1.1 403 F\r\nContent-Length: 10\r\n\r\n0123456789", maxBody: 4,
			status: 403, reason: "F", header: http.Header{"Content-Length": {"10"}}, body: "0123", rest: "456789"},
		{name: "content_length_zero", in: "HTTP/1.1 403 F\r\nContent-Length: 0\r\n\r\nnext", status: 403, reason: "F",
			header: http.Header{"Content-Length": {"0"}}, rest: "next"},
		{name: "content_length_invalid_no_body", in: "HTTP/1.1 403 F\r\nContent-Length: -1\r\n\r\nnext", status: 403, reason: "F",
			header: http.Header{"Content-Length": {"-1"}}, rest: "next"},
		{name: "content_length_conflicting_no_body_RFC9112_6.3", in: "HTTP/1.1 403 F\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nnext",
			status: 403, reason: "F", header: http.Header{"Content-Length": {"1", "2"}}, rest: "next"},
		{name: "chunked", in: "HTTP/1.1 500 E\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", status: 500, reason: "E",
			header: http.Header{"Transfer-Encoding": {"chunked"}}, body: "abcde", rest: "\r\n"}, // the empty trailer section stays: the conn is closed after a non-101 anyway
		{name: "chunked_wins_over_content_length", in: "HTTP/1.1 500 E\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
			status: 500, reason: "E", header: http.Header{"Content-Length": {"1"}, "Transfer-Encoding": {"chunked"}}, body: "abc", rest: "\r\n"},
		{name: "chunked_malformed_keeps_partial", in: "HTTP/1.1 500 E\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n",
			status: 500, reason: "E", header: http.Header{"Transfer-Encoding": {"chunked"}}, body: "abc"},
		{name: "other_transfer_coding_read_to_close", in: "HTTP/1.1 500 E\r\nTransfer-Encoding: gzip\r\n\r\nraw",
			status: 500, reason: "E", header: http.Header{"Transfer-Encoding": {"gzip"}}, body: "raw"},
		{name: "close_delimited", in: "HTTP/1.1 502 B\r\n\r\nuntil close", status: 502, reason: "B", header: http.Header{}, body: "until close"},
		{name: "exactly_at_bound", in: ok101 + "rest", maxHeader: len(ok101), status: 101, reason: "Switching Protocols",
			header: http.Header{"Upgrade": {"websocket"}}, rest: "rest"},

		{name: "one_over_bound", in: ok101, maxHeader: len(ok101) - 1, err: ErrResponseTooLarge},
		{name: "interim_counts_toward_bound", in: strings.Repeat("HTTP/1.1 100 C\r\n\r\n", 2000) + ok101, err: ErrResponseTooLarge},
		{name: "empty_input", in: "", err: io.ErrUnexpectedEOF},
		{name: "eof_in_headers", in: "HTTP/1.1 101 S\r\nUpgrade: websocket\r\n", err: io.ErrUnexpectedEOF},
		{name: "HTTP2_status_line", in: "HTTP/2 101\r\n\r\n", err: ErrBadResponse},
		{name: "HTTP1.2", in: "HTTP/1.2 101 S\r\n\r\n", err: ErrBadResponse},
		{name: "lowercase_proto", in: "http/1.1 101 S\r\n\r\n", err: ErrBadResponse},
		{name: "four_digit_status", in: "HTTP/1.1 1010 S\r\n\r\n", err: ErrBadResponse},
		{name: "two_digit_status", in: "HTTP/1.1 10 S\r\n\r\n", err: ErrBadResponse},
		{name: "status_099", in: "HTTP/1.1 099 S\r\n\r\n", err: ErrBadResponse},
		{name: "status_600", in: "HTTP/1.1 600 S\r\n\r\n", err: ErrBadResponse},
		{name: "status_not_digits", in: "HTTP/1.1 1x1 S\r\n\r\n", err: ErrBadResponse},
		{name: "reason_with_NUL", in: "HTTP/1.1 101 S\x00\r\n\r\n", err: ErrBadResponse},
		{name: "space_before_colon_RFC9112_5.1", in: "HTTP/1.1 101 S\r\nUpgrade : websocket\r\n\r\n", err: ErrBadResponse},
		{name: "no_colon", in: "HTTP/1.1 101 S\r\nUpgrade websocket\r\n\r\n", err: ErrBadResponse},
		{name: "empty_name", in: "HTTP/1.1 101 S\r\n: v\r\n\r\n", err: ErrBadResponse},
		{name: "bare_CR_in_value_RFC9110_5.5", in: "HTTP/1.1 101 S\r\nSet-Cookie: a\rX-Evil: 1\r\n\r\n", err: ErrBadResponse},
		{name: "NUL_in_value", in: "HTTP/1.1 101 S\r\nX: a\x00b\r\n\r\n", err: ErrBadResponse},
		{name: "DEL_in_value", in: "HTTP/1.1 101 S\r\nX: a\x7fb\r\n\r\n", err: ErrBadResponse},
		{name: "fold_before_any_field", in: "HTTP/1.1 101 S\r\n folded\r\n\r\n", err: ErrBadResponse},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// A 16-byte buffer (bufio's minimum) exercises lines longer
			// than the buffer; the default size the common path.
			for _, size := range []int{16, 4096} {
				br := bufio.NewReaderSize(strings.NewReader(tc.in), size)
				resp, err := ReadResponse(br, tc.maxHeader, tc.maxBody)
				if tc.err != nil {
					if !errors.Is(err, tc.err) || resp != nil {
						t.Fatalf("size %d: got %v %v, want %v", size, resp, err, tc.err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("size %d: %v", size, err)
				}
				if resp.StatusCode != tc.status || resp.Reason != tc.reason || !reflect.DeepEqual(resp.Header, tc.header) || string(resp.Body) != tc.body {
					t.Fatalf("size %d: got %d %q %v %q", size, resp.StatusCode, resp.Reason, resp.Header, resp.Body)
				}
				rest, _ := io.ReadAll(br)
				if string(rest) != tc.rest {
					t.Fatalf("size %d: left %q, want %q", size, rest, tc.rest)
				}
				if resp.StatusCode == 101 && resp.HeadSize != len(tc.in)-len(tc.rest) {
					t.Fatalf("HeadSize %d", resp.HeadSize)
				}
			}
		})
	}
}

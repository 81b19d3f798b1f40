package resp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
)

func TestWriterReplies(t *testing.T) {
	tests := []struct {
		name  string
		write func(w *Writer)
		resp2 string
		resp3 string // empty: same as resp2
	}{
		{"simple", func(w *Writer) { w.SimpleString("OK") }, "+OK\r\n", ""},
		{"simple empty", func(w *Writer) { w.SimpleString("") }, "+\r\n", ""},
		{"simple CRLF", func(w *Writer) { w.SimpleString("a\r\nb\nc") }, "+a  b c\r\n", ""},
		{"simple binary", func(w *Writer) { w.SimpleString("\xff\x00") }, "+\xff\x00\r\n", ""},
		{"error", func(w *Writer) { w.Error("ERR unknown command") }, "-ERR unknown command\r\n", ""},
		{"error CRLF", func(w *Writer) { w.Error("ERR x\r\n+OK") }, "-ERR x  +OK\r\n", ""},
		{"int", func(w *Writer) { w.Int(42) }, ":42\r\n", ""},
		{"int zero", func(w *Writer) { w.Int(0) }, ":0\r\n", ""},
		{"int min", func(w *Writer) { w.Int(math.MinInt64) }, ":-9223372036854775808\r\n", ""},
		{"int max", func(w *Writer) { w.Int(math.MaxInt64) }, ":9223372036854775807\r\n", ""},
		{"bulk", func(w *Writer) { w.Bulk([]byte("a\r\nb")) }, "$4\r\na\r\nb\r\n", ""},
		{"bulk empty", func(w *Writer) { w.Bulk([]byte{}) }, "$0\r\n\r\n", ""},
		{"bulk nil is empty", func(w *Writer) { w.Bulk(nil) }, "$0\r\n\r\n", ""},
		{"bulk string", func(w *Writer) { w.BulkString("mymaster") }, "$8\r\nmymaster\r\n", ""},
		{"null bulk", func(w *Writer) { w.NullBulk() }, "$-1\r\n", "_\r\n"},
		{"null array", func(w *Writer) { w.NullArray() }, "*-1\r\n", "_\r\n"},
		{"array", func(w *Writer) { w.ArrayHeader(2); w.Int(1); w.Int(2) }, "*2\r\n:1\r\n:2\r\n", ""},
		{"array empty", func(w *Writer) { w.ArrayHeader(0) }, "*0\r\n", ""},
		{"array negative", func(w *Writer) { w.ArrayHeader(-1) }, "*-1\r\n", "_\r\n"},
		{"map", func(w *Writer) { w.MapHeader(1); w.BulkString("k"); w.Int(1) }, "*2\r\n$1\r\nk\r\n:1\r\n", "%1\r\n$1\r\nk\r\n:1\r\n"},
		{"map empty", func(w *Writer) { w.MapHeader(0) }, "*0\r\n", "%0\r\n"},
		{"map negative", func(w *Writer) { w.MapHeader(-3) }, "*-1\r\n", "_\r\n"},
		{"set", func(w *Writer) { w.SetHeader(1); w.BulkString("a") }, "*1\r\n$1\r\na\r\n", "~1\r\n$1\r\na\r\n"},
		{"set negative", func(w *Writer) { w.SetHeader(-1) }, "*-1\r\n", "_\r\n"},
		{"push", func(w *Writer) {
			w.PushHeader(3)
			w.BulkString("message")
			w.BulkString("+switch-master")
			w.BulkString("m 1.1.1.1 1 2.2.2.2 2")
		}, "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$21\r\nm 1.1.1.1 1 2.2.2.2 2\r\n", ">3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$21\r\nm 1.1.1.1 1 2.2.2.2 2\r\n"},
		{"push negative", func(w *Writer) { w.PushHeader(-1) }, "*-1\r\n", "_\r\n"},
		{"double", func(w *Writer) { w.Double(1.5) }, "$3\r\n1.5\r\n", ",1.5\r\n"},
		{"double integral", func(w *Writer) { w.Double(3) }, "$1\r\n3\r\n", ",3\r\n"},
		{"double negative", func(w *Writer) { w.Double(-0.25) }, "$5\r\n-0.25\r\n", ",-0.25\r\n"},
		{"double exponent", func(w *Writer) { w.Double(1e300) }, "$6\r\n1e+300\r\n", ",1e+300\r\n"},
		{"double inf", func(w *Writer) { w.Double(math.Inf(1)) }, "$3\r\ninf\r\n", ",inf\r\n"},
		{"double -inf", func(w *Writer) { w.Double(math.Inf(-1)) }, "$4\r\n-inf\r\n", ",-inf\r\n"},
		{"double nan", func(w *Writer) { w.Double(math.NaN()) }, "$3\r\nnan\r\n", ",nan\r\n"},
		{"bool true", func(w *Writer) { w.Bool(true) }, ":1\r\n", "#t\r\n"},
		{"bool false", func(w *Writer) { w.Bool(false) }, ":0\r\n", "#f\r\n"},
		{"string array", func(w *Writer) { w.StringArray("127.0.0.1", "6379") }, "*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n", ""},
		{"string array empty", func(w *Writer) { w.StringArray() }, "*0\r\n", ""},
		{"string map", func(w *Writer) { w.StringMap("name", "m", "port", "1") },
			"*4\r\n$4\r\nname\r\n$1\r\nm\r\n$4\r\nport\r\n$1\r\n1\r\n",
			"%2\r\n$4\r\nname\r\n$1\r\nm\r\n$4\r\nport\r\n$1\r\n1\r\n"},
		{"string map odd", func(w *Writer) { w.StringMap("k") }, "*2\r\n$1\r\nk\r\n$0\r\n\r\n", "%1\r\n$1\r\nk\r\n$0\r\n\r\n"},
		{"string map empty", func(w *Writer) { w.StringMap() }, "*0\r\n", "%0\r\n"},
	}
	for _, tt := range tests {
		for _, proto := range []int{2, 3} {
			want := tt.resp2
			if proto == 3 && tt.resp3 != "" {
				want = tt.resp3
			}
			var buf bytes.Buffer
			w := NewWriter(&buf)
			if err := w.SetProtocol(proto); err != nil {
				t.Fatal(err)
			}
			tt.write(w)
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if got := buf.String(); got != want {
				t.Errorf("%s, RESP%d: got %q, want %q", tt.name, proto, got, want)
			}
			// Every reply must be one well-formed frame for an independent
			// decoder, with nothing left over.
			br := bufio.NewReader(&buf)
			if _, err := decodeValue(br); err != nil {
				t.Errorf("%s, RESP%d: decode: %v", tt.name, proto, err)
			} else if br.Buffered() != 0 {
				t.Errorf("%s, RESP%d: %d bytes after the reply", tt.name, proto, br.Buffered())
			}
		}
	}
}

func TestWriterProtocol(t *testing.T) {
	w := NewWriter(&bytes.Buffer{})
	if got := w.Protocol(); got != 2 {
		t.Fatalf("a new Writer speaks RESP%d, want RESP2", got)
	}
	for _, bad := range []int{0, 1, 4, -3} {
		if err := w.SetProtocol(bad); err == nil {
			t.Errorf("SetProtocol(%d) accepted", bad)
		}
	}
	if got := w.Protocol(); got != 2 {
		t.Fatalf("a rejected SetProtocol changed the protocol to %d", got)
	}
	if err := w.SetProtocol(3); err != nil || w.Protocol() != 3 {
		t.Fatalf("SetProtocol(3) = %v, Protocol() = %d", err, w.Protocol())
	}
	if err := w.SetProtocol(2); err != nil || w.Protocol() != 2 {
		t.Fatalf("SetProtocol(2) = %v, Protocol() = %d", err, w.Protocol())
	}
}

// TestWriterBuffers checks that nothing reaches the connection before Flush,
// so a pipeline's replies go out in one write.
func TestWriterBuffers(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.SimpleString("PONG")
	w.SimpleString("PONG")
	if buf.Len() != 0 {
		t.Fatalf("%d bytes written before Flush", buf.Len())
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); got != "+PONG\r\n+PONG\r\n" {
		t.Fatalf("got %q", got)
	}
}

// TestWriterReset moves the output to another writer and keeps the
// protocol: a connection that changes its transport keeps speaking RESP3.
func TestWriterReset(t *testing.T) {
	var first, second bytes.Buffer
	w := NewWriter(&first)
	if err := w.SetProtocol(3); err != nil {
		t.Fatal(err)
	}
	w.NullBulk()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	w.Reset(&second)
	w.NullBulk()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if first.String() != "_\r\n" || second.String() != "_\r\n" {
		t.Fatalf("first %q, second %q", first.String(), second.String())
	}
}

// TestWriterLargeBulk crosses the buffer size, where bufio writes through.
func TestWriterLargeBulk(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	big := strings.Repeat("x", 100_000)
	w.SimpleString("a")
	w.BulkString(big)
	w.Bulk([]byte(big))
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	want := "+a\r\n$100000\r\n" + big + "\r\n$100000\r\n" + big + "\r\n"
	if buf.String() != want {
		t.Fatal("large bulk framed wrongly")
	}
}

type failWriter struct{ n int }

var errBrokenPipe = errors.New("broken pipe")

func (f *failWriter) Write(p []byte) (int, error) {
	f.n++
	return 0, errBrokenPipe
}

// TestWriterStickyError checks the contract that lets handlers skip error
// checks: the first write error comes back from Flush, later writes are
// dropped rather than retried.
func TestWriterStickyError(t *testing.T) {
	fw := &failWriter{}
	w := NewWriter(fw)
	w.BulkString(strings.Repeat("x", 10_000)) // larger than the buffer
	w.SimpleString("OK")
	w.ArrayHeader(3)
	if err := w.Flush(); !errors.Is(err, errBrokenPipe) {
		t.Fatalf("Flush = %v, want %v", err, errBrokenPipe)
	}
	if err := w.Flush(); !errors.Is(err, errBrokenPipe) {
		t.Fatalf("second Flush = %v, want %v", err, errBrokenPipe)
	}
	if fw.n != 1 {
		t.Fatalf("underlying writer called %d times after failing, want once", fw.n)
	}
}

func TestWriterAllocs(t *testing.T) {
	w := NewWriter(io.Discard)
	payload := []byte("127.0.0.1")
	allocs := testing.AllocsPerRun(100, func() {
		w.ArrayHeader(2)
		w.Bulk(payload)
		w.BulkString("6379")
		w.Int(12345)
		w.SimpleString("OK")
		_ = w.Flush()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per reply, want 0", allocs)
	}
}

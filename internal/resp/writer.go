package resp

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Writer buffers replies to one client. It starts in RESP2, as a Redis
// connection does until HELLO 3; SetProtocol switches.
//
// The write methods return nothing: the first error of the underlying writer
// is kept by the buffer, later writes are dropped, and Flush returns it. So a
// handler writes its whole reply and checks once. A Writer is not safe for
// concurrent use.
type Writer struct {
	bw    *bufio.Writer
	proto int
}

// NewWriter returns a Writer in RESP2 that buffers output to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{bw: bufio.NewWriter(w), proto: 2}
}

// SetProtocol selects RESP2 (2) or RESP3 (3) for the replies written after
// it. Any other version is rejected and the protocol stays unchanged.
func (w *Writer) SetProtocol(version int) error {
	if version != 2 && version != 3 {
		return fmt.Errorf("resp: unsupported protocol version %d", version)
	}
	w.proto = version
	return nil
}

// Protocol reports the protocol version in use, 2 or 3.
func (w *Writer) Protocol() int { return w.proto }

// Reset sends later output to dst, keeping the protocol version. What is
// buffered and not yet flushed is dropped: flush first.
func (w *Writer) Reset(dst io.Writer) { w.bw.Reset(dst) }

// Flush sends the buffered replies and returns the first error the
// underlying writer reported, if any.
func (w *Writer) Flush() error { return w.bw.Flush() }

func (w *Writer) resp3() bool { return w.proto == 3 }

// line writes a type byte, a payload that the caller has made CRLF-free, and
// the line end.
func (w *Writer) line(kind byte, s string) {
	_ = w.bw.WriteByte(kind)
	_, _ = w.bw.WriteString(s)
	_, _ = w.bw.WriteString("\r\n")
}

// header writes a type byte, a decimal number and the line end without
// allocating.
func (w *Writer) header(kind byte, n int64) {
	b := w.bw.AvailableBuffer()
	b = append(b, kind)
	b = strconv.AppendInt(b, n, 10)
	b = append(b, '\r', '\n')
	_, _ = w.bw.Write(b)
}

// oneLine replaces CR and LF, which would end a simple string or error early
// and let the rest of the text be read as another reply. Redis does the same.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	// Byte by byte, not strings.Map: that would rewrite invalid UTF-8.
	b := []byte(s)
	for i, c := range b {
		if c == '\r' || c == '\n' {
			b[i] = ' '
		}
	}
	return string(b)
}

// SimpleString writes a status reply such as "+OK". CR and LF in s are
// written as spaces.
func (w *Writer) SimpleString(s string) { w.line('+', oneLine(s)) }

// Error writes an error reply "-msg". msg starts with the error code, for
// example "ERR unknown command" or "NOGOODSLAVE No suitable replica"; CR and
// LF in it are written as spaces.
func (w *Writer) Error(msg string) { w.line('-', oneLine(msg)) }

// Int writes an integer reply.
func (w *Writer) Int(n int64) { w.header(':', n) }

// Bulk writes b as a bulk string. A nil b is an empty string, not a null;
// use NullBulk for that.
func (w *Writer) Bulk(b []byte) {
	w.header('$', int64(len(b)))
	_, _ = w.bw.Write(b)
	_, _ = w.bw.WriteString("\r\n")
}

// BulkString writes s as a bulk string.
func (w *Writer) BulkString(s string) {
	w.header('$', int64(len(s)))
	_, _ = w.bw.WriteString(s)
	_, _ = w.bw.WriteString("\r\n")
}

// Encoded writes a reply encoded beforehand (AppendArrayOfBulks) as it is: the caller vouches that it is valid RESP for
// the protocol in use.
func (w *Writer) Encoded(b []byte) { _, _ = w.bw.Write(b) }

// AppendArrayOfBulks appends the encoding of an array of bulk strings to
// b: the same bytes in RESP2 and RESP3.
func AppendArrayOfBulks(b []byte, items ...string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(items)), 10)
	b = append(b, '\r', '\n')
	for _, it := range items {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(it)), 10)
		b = append(b, '\r', '\n')
		b = append(b, it...)
		b = append(b, '\r', '\n')
	}
	return b
}

// NullBulk writes the null that stands for a missing string: "$-1" in RESP2,
// "_" in RESP3.
func (w *Writer) NullBulk() {
	if w.resp3() {
		w.line('_', "")
		return
	}
	w.line('$', "-1")
}

// NullArray writes the null that stands for a missing array: "*-1" in RESP2,
// "_" in RESP3. SENTINEL GET-MASTER-ADDR-BY-NAME answers it for an unknown
// name.
func (w *Writer) NullArray() {
	if w.resp3() {
		w.line('_', "")
		return
	}
	w.line('*', "-1")
}

// ArrayHeader starts an array of n elements; the caller writes them next. A
// negative n writes a null array.
func (w *Writer) ArrayHeader(n int) {
	if n < 0 {
		w.NullArray()
		return
	}
	w.header('*', int64(n))
}

// MapHeader starts a map of n key/value pairs; the caller writes 2n elements,
// each key followed by its value. RESP2 has no map, so there it is an array
// of 2n elements, as Redis sends. A negative n writes a null array.
func (w *Writer) MapHeader(n int) {
	switch {
	case n < 0:
		w.NullArray()
	case w.resp3():
		w.header('%', int64(n))
	default:
		w.header('*', 2*int64(n))
	}
}

// SetHeader starts a set of n elements: "~n" in RESP3, an array in RESP2. A
// negative n writes a null array.
func (w *Writer) SetHeader(n int) {
	switch {
	case n < 0:
		w.NullArray()
	case w.resp3():
		w.header('~', int64(n))
	default:
		w.header('*', int64(n))
	}
}

// PushHeader starts an out-of-band push of n elements, such as a pub/sub
// message: ">n" in RESP3, an array in RESP2, where a subscribed connection
// carries nothing else. A negative n writes a null array.
func (w *Writer) PushHeader(n int) {
	switch {
	case n < 0:
		w.NullArray()
	case w.resp3():
		w.header('>', int64(n))
	default:
		w.header('*', int64(n))
	}
}

// Double writes f: a RESP3 double, or in RESP2 a bulk string holding the
// same text, as Redis does. Infinities are "inf" and "-inf", NaN is "nan".
func (w *Writer) Double(f float64) {
	var s string
	switch {
	case math.IsInf(f, 1):
		s = "inf"
	case math.IsInf(f, -1):
		s = "-inf"
	case math.IsNaN(f):
		s = "nan"
	default:
		s = strconv.FormatFloat(f, 'g', -1, 64)
	}
	if w.resp3() {
		w.line(',', s)
		return
	}
	w.BulkString(s)
}

// Bool writes b: "#t" or "#f" in RESP3, the integer 1 or 0 in RESP2.
func (w *Writer) Bool(b bool) {
	switch {
	case w.resp3() && b:
		w.line('#', "t")
	case w.resp3():
		w.line('#', "f")
	case b:
		w.Int(1)
	default:
		w.Int(0)
	}
}

// StringArray writes items as an array of bulk strings.
func (w *Writer) StringArray(items ...string) {
	w.ArrayHeader(len(items))
	for _, s := range items {
		w.BulkString(s)
	}
}

// StringMap writes a map of bulk strings from key/value pairs in the order
// given (Sentinel's instance maps are read by position by some tools). An
// odd trailing key gets an empty value, so the reply stays well formed.
func (w *Writer) StringMap(pairs ...string) {
	n := (len(pairs) + 1) / 2
	w.MapHeader(n)
	for _, s := range pairs {
		w.BulkString(s)
	}
	if len(pairs)%2 == 1 {
		w.BulkString("")
	}
}

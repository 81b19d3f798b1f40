package resp

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"
)

var readSeeds = []string{
	"",
	"*1\r\n$4\r\nPING\r\n",
	"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$8\r\nmymaster\r\n",
	"*2\r\n$4\r\nECHO\r\n$6\r\na\r\n\x00\xffb\r\n",
	"*0\r\n*-1\r\n*1\r\n$0\r\n\r\n",
	"PING\r\nPING\n\r\n  \t\n",
	`SET "a b\x41\n" 'it\'s' a"b c"` + "\r\n",
	`"\xZZ" "\x4" '\\'` + "\n",
	"ECHO \"abc\r\n",
	`ECHO "a"b` + "\n",
	"*abc\r\n",
	"*01\r\n",
	"*-2\r\n",
	"*99999999999999999999\r\n",
	"*1\r\nPING\r\n",
	"*1\r\n$-1\r\n",
	"*1\r\n$3\r\nPING\r\n",
	"*1\r\n$4\r\nPING",
	"*2\r\n$5\r\nabcde\r\n$4\r\nabcd\r\n",
	"*9\r\n$1\r\na\r\n",
	"a b c d e f g h i j\n",
	"*1\r\n$65\r\n",
	"*1\r\n$524288\r\nx",
	"*4096\r\n",
}

// tightLimits make the fuzzer reach every limit with short inputs.
var tightLimits = Limits{MaxArgs: 8, MaxBulkLen: 64, MaxInlineLen: 128, MaxCommandLen: 256}

// FuzzReadCommand checks, for any bytes: no panic; only the documented
// errors, sticky; commands within the limits; allocation bounded both by the
// limits and by the bytes actually parsed; and every command re-encoded as a
// multibulk (by Writer) and as a quoted inline line parses back the same.
func FuzzReadCommand(f *testing.F) {
	for _, s := range readSeeds {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, tight bool) {
		limits := Limits{}
		if tight {
			limits = tightLimits
		}
		lim := limits.withDefaults()
		src := bytes.NewReader(data)
		r := NewReader(src, limits)
		parsed := func() int { return len(data) - src.Len() - r.Buffered() }
		// What one call may allocate whatever it is sent: the arguments
		// and their slice while growing, an inline line being assembled,
		// one capped preallocation, an error value.
		const sliceHeader = 24
		absolute := uint64(2*lim.MaxCommandLen + 2*lim.MaxInlineLen + 2*sliceHeader*lim.MaxArgs + maxPrealloc + 1024)

		for {
			start := parsed()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			args, err := r.ReadCommand()
			runtime.ReadMemStats(&after)
			alloc := after.TotalAlloc - before.TotalAlloc
			n := parsed() - start
			// Relative to the input: a few dozen bytes per byte parsed (an
			// argument of one byte costs a slice header, twice while the
			// slice grows) plus one capped preallocation.
			if relative := uint64(64*n + maxPrealloc + 1024); alloc > relative {
				t.Fatalf("allocated %d bytes after parsing %d, budget %d", alloc, n, relative)
			}
			if alloc > absolute {
				t.Fatalf("allocated %d bytes, limits allow %d", alloc, absolute)
			}

			if err != nil {
				var pe *ProtocolError
				if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.As(err, &pe) {
					t.Fatalf("unexpected error type %T: %v", err, err)
				}
				if _, again := r.ReadCommand(); again != err {
					t.Fatalf("error not sticky: %v then %v", err, again)
				}
				return
			}

			if len(args) == 0 || len(args) > lim.MaxArgs {
				t.Fatalf("%d arguments, limit %d", len(args), lim.MaxArgs)
			}
			total := 0
			for _, a := range args {
				if len(a) > lim.MaxBulkLen || a == nil {
					t.Fatalf("argument of %d bytes (nil %v), limit %d", len(a), a == nil, lim.MaxBulkLen)
				}
				total += len(a)
			}
			if total > lim.MaxCommandLen {
				t.Fatalf("command of %d bytes, limit %d", total, lim.MaxCommandLen)
			}

			var buf bytes.Buffer
			w := NewWriter(&buf)
			w.ArrayHeader(len(args))
			for _, a := range args {
				w.Bulk(a)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			checkReparse(t, "multibulk", buf.Bytes(), limits, args)

			// The '\r' before '\n' counts toward MaxInlineLen.
			if line := quoteInline(args); len(line)+1 <= lim.MaxInlineLen {
				checkReparse(t, "inline", append(line, '\r', '\n'), limits, args)
			}
		}
	})
}

func checkReparse(t *testing.T, form string, encoded []byte, limits Limits, want [][]byte) {
	t.Helper()
	r := NewReader(bytes.NewReader(encoded), limits)
	got, err := r.ReadCommand()
	if err != nil {
		t.Fatalf("%s %q of %q: %v", form, encoded, want, err)
	}
	if len(got) != len(want) {
		t.Fatalf("%s %q: got %q, want %q", form, encoded, got, want)
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("%s %q: got %q, want %q", form, encoded, got, want)
		}
	}
	if _, err := r.ReadCommand(); err != io.EOF {
		t.Fatalf("%s %q: after the command: %v, want io.EOF", form, encoded, err)
	}
}

// replyGen turns fuzz bytes into a sequence of Writer calls and the reply an
// independent decoder must see for each.
type replyGen struct {
	data  []byte
	proto int
}

func (g *replyGen) byte() byte {
	if len(g.data) == 0 {
		return 0
	}
	b := g.data[0]
	g.data = g.data[1:]
	return b
}

func (g *replyGen) bytes() []byte {
	n := min(int(g.byte()), len(g.data))
	b := g.data[:n]
	g.data = g.data[n:]
	return b
}

func (g *replyGen) uint64() uint64 {
	var b [8]byte
	for i := range b {
		b[i] = g.byte()
	}
	return binary.LittleEndian.Uint64(b[:])
}

// oneLineModel is what a simple string or error must look like on the wire.
func oneLineModel(s []byte) string {
	b := bytes.Clone(s)
	for i := range b {
		if b[i] == '\r' || b[i] == '\n' {
			b[i] = ' '
		}
	}
	return string(b)
}

func (g *replyGen) pick(resp2, resp3 byte) byte {
	if g.proto == 3 {
		return resp3
	}
	return resp2
}

func (g *replyGen) null(kind byte) value {
	if g.proto == 3 {
		return value{kind: '_'}
	}
	return value{kind: kind, null: true}
}

// reply writes one reply to w and returns what it must decode to.
func (g *replyGen) reply(w *Writer, depth int) value {
	switch op := g.byte() % 15; op {
	case 0:
		s := g.bytes()
		w.SimpleString(string(s))
		return value{kind: '+', str: oneLineModel(s)}
	case 1:
		s := g.bytes()
		w.Error(string(s))
		return value{kind: '-', str: oneLineModel(s)}
	case 2:
		n := int64(g.uint64())
		w.Int(n)
		return value{kind: ':', str: strconv.FormatInt(n, 10)}
	case 3:
		b := g.bytes()
		w.Bulk(b)
		return value{kind: '$', str: string(b)}
	case 4:
		s := string(g.bytes())
		w.BulkString(s)
		return value{kind: '$', str: s}
	case 5:
		w.NullBulk()
		return g.null('$')
	case 6:
		w.NullArray()
		return g.null('*')
	case 7, 8, 9, 10:
		n := int(g.byte() % 5)
		if depth >= 5 {
			n = 0
		}
		if n == 4 {
			n = -1
		}
		var kind byte
		count := n
		switch op {
		case 7:
			w.ArrayHeader(n)
			kind = '*'
		case 8:
			w.MapHeader(n)
			kind = g.pick('*', '%')
			count = 2 * n
		case 9:
			w.SetHeader(n)
			kind = g.pick('*', '~')
		case 10:
			w.PushHeader(n)
			kind = g.pick('*', '>')
		}
		if n < 0 {
			return g.null('*')
		}
		// The decoder keeps a RESP3 map's keys and values flat, so a map
		// is 2n elements in both protocols.
		v := value{kind: kind, elems: []value{}}
		for range count {
			v.elems = append(v.elems, g.reply(w, depth+1))
		}
		return v
	case 11:
		f := math.Float64frombits(g.uint64())
		w.Double(f)
		return value{kind: g.pick('$', ','), double: true, f: f}
	case 12:
		b := g.byte()%2 == 1
		w.Bool(b)
		switch {
		case g.proto == 3 && b:
			return value{kind: '#', str: "t"}
		case g.proto == 3:
			return value{kind: '#', str: "f"}
		case b:
			return value{kind: ':', str: "1"}
		default:
			return value{kind: ':', str: "0"}
		}
	default: // 13, 14
		items := make([]string, g.byte()%6)
		for i := range items {
			items[i] = string(g.bytes())
		}
		v := value{kind: '*', elems: []value{}}
		if op == 13 {
			w.StringArray(items...)
		} else {
			w.StringMap(items...)
			v.kind = g.pick('*', '%')
			if len(items)%2 == 1 {
				items = append(items, "")
			}
		}
		for _, s := range items {
			v.elems = append(v.elems, value{kind: '$', str: s})
		}
		return v
	}
}

// FuzzWriterRoundTrip writes a sequence of replies chosen by the fuzz input,
// in RESP2 or RESP3, and checks that an independent decoder reads back
// exactly the expected replies and nothing more.
func FuzzWriterRoundTrip(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x01\x07\x03\x04\x02abc\x0b\x00\x00\x00\x00\x00\x00\xf8\x7f"))
	f.Add([]byte("\x00\x08\x02\x00\x03+OK\x01\x04a\r\nb\x0e\x03\x01k\x01v\x01x"))
	rng := rand.New(rand.NewPCG(1, 2))
	for range 32 {
		b := make([]byte, 64+rng.IntN(256))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g := &replyGen{data: data}
		g.proto = 2 + int(g.byte()%2)
		var buf bytes.Buffer
		w := NewWriter(&buf)
		if err := w.SetProtocol(g.proto); err != nil {
			t.Fatal(err)
		}
		var want []value
		for len(g.data) > 0 && len(want) < 64 {
			want = append(want, g.reply(w, 0))
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		wire := buf.String()
		br := bufio.NewReader(&buf)
		for i, exp := range want {
			got, err := decodeValue(br)
			if err != nil {
				t.Fatalf("RESP%d reply %d: %v\nwire %q", g.proto, i, err, wire)
			}
			if !match(exp, got) {
				t.Fatalf("RESP%d reply %d: got %v, want %v\nwire %q", g.proto, i, got, exp, wire)
			}
		}
		if rest, _ := io.ReadAll(br); len(rest) != 0 {
			t.Fatalf("RESP%d: %q left after %d replies", g.proto, rest, len(want))
		}
	})
}

// FuzzReadCommandShared checks that ReadCommandShared reads exactly what
// ReadCommand reads, arguments and errors, whether the input arrives at once
// (its buffered fast path) or a few bytes at a time (the general path, and
// requests cut by the buffer's end).
func FuzzReadCommandShared(f *testing.F) {
	for _, s := range readSeeds {
		f.Add([]byte(s), false, uint8(0))
		f.Add([]byte(s+s), true, uint8(3))
	}
	f.Add([]byte("*1\r\n$01\r\na\r\n*1\r\n$-0\r\n*01\r\n$1\r\na\r\n"), false, uint8(0))
	f.Add([]byte("*2\r\n$3\r\nabc\r\n$2\r\nd"), false, uint8(5))
	f.Fuzz(func(t *testing.T, data []byte, tight bool, chunk uint8) {
		limits := Limits{}
		if tight {
			limits = tightLimits
		}
		var src io.Reader = bytes.NewReader(data)
		if chunk > 0 {
			src = &chunkReader{data: data, n: int(chunk)}
		}
		want := NewReader(bytes.NewReader(data), limits)
		got := NewReader(src, limits)
		for i := 0; ; i++ {
			w, werr := want.ReadCommand()
			g, gerr := got.ReadCommandShared()
			if (werr == nil) != (gerr == nil) || (werr != nil && werr.Error() != gerr.Error()) {
				t.Fatalf("command %d: shared error %v, want %v", i, gerr, werr)
			}
			if werr != nil {
				return
			}
			if len(w) != len(g) {
				t.Fatalf("command %d: shared %q, want %q", i, g, w)
			}
			for k := range w {
				if !bytes.Equal(w[k], g[k]) {
					t.Fatalf("command %d: shared %q, want %q", i, g, w)
				}
			}
		}
	})
}

// chunkReader returns its data at most n bytes per Read.
type chunkReader struct {
	data []byte
	n    int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), c.n)], c.data)
	c.data = c.data[k:]
	return k, nil
}

package resp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// chunkings are the ways a stream can arrive: all at once, one byte per Read
// (every boundary split), and half of each request.
var chunkings = []struct {
	name string
	wrap func(io.Reader) io.Reader
}{
	{"whole", func(r io.Reader) io.Reader { return r }},
	{"one byte", iotest.OneByteReader},
	{"half", iotest.HalfReader},
}

// readAll reads commands until an error and returns them as strings.
func readAll(r *Reader) ([][]string, error) {
	var cmds [][]string
	for {
		args, err := r.ReadCommand()
		if err != nil {
			return cmds, err
		}
		cmd := make([]string, len(args))
		for i, a := range args {
			cmd[i] = string(a)
		}
		cmds = append(cmds, cmd)
	}
}

func cmds(c ...[]string) [][]string { return c }
func args(a ...string) []string     { return a }

func TestReadCommand(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want [][]string
	}{
		{"empty stream", "", nil},
		{"multibulk", "*1\r\n$4\r\nPING\r\n", cmds(args("PING"))},
		{"multibulk args", "*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$8\r\nmymaster\r\n",
			cmds(args("SENTINEL", "get-master-addr-by-name", "mymaster"))},
		{"empty bulk", "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", cmds(args("ECHO", ""))},
		{"binary bulk", "*2\r\n$4\r\nECHO\r\n$6\r\na\r\n\x00\xffb\r\n", cmds(args("ECHO", "a\r\n\x00\xffb"))},
		{"bulk of stars", "*1\r\n$3\r\n***\r\n", cmds(args("***"))},
		{"empty multibulk skipped", "*0\r\n*1\r\n$4\r\nPING\r\n", cmds(args("PING"))},
		{"null multibulk skipped", "*-1\r\n*1\r\n$4\r\nPING\r\n", cmds(args("PING"))},
		{"pipeline", "*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nPING\r\n*0\r\n\r\n  \r\n*1\r\n$4\r\nROLE\r\n",
			cmds(args("PING"), args("ECHO", "hi"), args("PING"), args("ROLE"))},
		{"inline CRLF", "PING\r\n", cmds(args("PING"))},
		{"inline LF", "PING\n", cmds(args("PING"))},
		{"inline words", "  sentinel\tmasters  \r\n", cmds(args("sentinel", "masters"))},
		{"inline other white space", "a\vb\fc\r\n", cmds(args("a", "b", "c"))},
		{"inline CR inside", "a\rb\n", cmds(args("a", "b"))},
		{"inline blank lines skipped", "\r\n\n \t \r\nPING\r\n", cmds(args("PING"))},
		{"inline NUL is data", "a\x00b\n", cmds(args("a\x00b"))},
		{"inline starting with $", "$4\r\n", cmds(args("$4"))},
		{"inline double quotes", `SET "a b" c` + "\r\n", cmds(args("SET", "a b", "c"))},
		{"inline single quotes", `SET 'a b' c` + "\r\n", cmds(args("SET", "a b", "c"))},
		{"inline empty quotes", `ECHO "" ''` + "\n", cmds(args("ECHO", "", ""))},
		{"inline escapes", `"\n\r\t\b\a\\\"\q"` + "\n", cmds(args("\n\r\t\b\a\\\"q"))},
		{"inline hex", `"\x41\x7a\x00\xFF"` + "\n", cmds(args("Az\x00\xff"))},
		{"inline bad hex is literal x", `"\xZZ" "\x4"` + "\n", cmds(args("xZZ", "x4"))},
		{"inline single quote escapes", `'it\'s' 'a\nb' 'c\d'` + "\n", cmds(args("it's", `a\nb`, `c\d`))},
		{"inline quote inside word", `a"b c" d'e f'` + "\n", cmds(args("ab c", "de f"))},
		{"inline quote at line end", "\"a\"\r\n", cmds(args("a"))},
		{"inline other quote kind inside", `"it's" 'say "hi"'` + "\n", cmds(args("it's", `say "hi"`))},
		{"inline quoted CRLF", `ECHO "a\r\nb"` + "\r\n", cmds(args("ECHO", "a\r\nb"))},
		{"inline then multibulk", "PING\n*1\r\n$4\r\nPING\r\n", cmds(args("PING"), args("PING"))},
	}
	for _, tt := range tests {
		for _, ch := range chunkings {
			t.Run(tt.name+"/"+ch.name, func(t *testing.T) {
				got, err := readAll(NewReader(ch.wrap(strings.NewReader(tt.in)), Limits{}))
				if err != io.EOF {
					t.Fatalf("error %v, want io.EOF after %q", err, got)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("got %q, want %q", got, tt.want)
				}
			})
		}
	}
}

var small = Limits{MaxArgs: 3, MaxBulkLen: 5, MaxInlineLen: 10, MaxCommandLen: 8}

func TestReadCommandErrors(t *testing.T) {
	tests := []struct {
		name   string
		limits Limits
		in     string
		want   string // the *ProtocolError text, or "EOF"/"unexpected EOF"
	}{
		// multibulk count
		{"count not a number", Limits{}, "*abc\r\n", "Protocol error: invalid multibulk length"},
		{"count empty", Limits{}, "*\r\n", "Protocol error: invalid multibulk length"},
		{"count trailing garbage", Limits{}, "*1x\r\n", "Protocol error: invalid multibulk length"},
		{"count leading zero", Limits{}, "*01\r\n", "Protocol error: invalid multibulk length"},
		{"count plus sign", Limits{}, "*+1\r\n", "Protocol error: invalid multibulk length"},
		{"count space", Limits{}, "* 1\r\n", "Protocol error: invalid multibulk length"},
		{"count minus zero", Limits{}, "*-0\r\n", "Protocol error: invalid multibulk length"},
		{"count negative", Limits{}, "*-2\r\n", "Protocol error: invalid multibulk length"},
		{"count overflow", Limits{}, "*99999999999999999999\r\n", "Protocol error: invalid multibulk length"},
		{"count int64 min", Limits{}, "*-9223372036854775808\r\n", "Protocol error: invalid multibulk length"},
		{"count LF only", Limits{}, "*1\n$4\r\nPING\r\n", "Protocol error: invalid multibulk length"},
		{"count line too long", Limits{}, "*" + strings.Repeat("1", 40) + "\r\n", "Protocol error: too big mbulk count string"},
		{"count line never ends", Limits{}, "*" + strings.Repeat("1", 1000), "Protocol error: too big mbulk count string"},
		{"count above MaxArgs", Limits{}, fmt.Sprintf("*%d\r\n", DefaultMaxArgs+1), "Protocol error: invalid multibulk length"},
		{"count above small MaxArgs", small, "*4\r\n", "Protocol error: invalid multibulk length"},
		// bulk header
		{"missing $", Limits{}, "*1\r\nPING\r\n", "Protocol error: expected '$', got 'P'"},
		{"integer instead of bulk", Limits{}, "*1\r\n:1\r\n", "Protocol error: expected '$', got ':'"},
		{"control byte instead of $", Limits{}, "*1\r\n\n", `Protocol error: expected '$', got '\x0a'`},
		{"high byte instead of $", Limits{}, "*1\r\n\xff", `Protocol error: expected '$', got '\xff'`},
		{"bulk null", Limits{}, "*1\r\n$-1\r\n", "Protocol error: invalid bulk length"},
		{"bulk negative", Limits{}, "*1\r\n$-5\r\n", "Protocol error: invalid bulk length"},
		{"bulk not a number", Limits{}, "*1\r\n$x\r\n", "Protocol error: invalid bulk length"},
		{"bulk empty length", Limits{}, "*1\r\n$\r\n", "Protocol error: invalid bulk length"},
		{"bulk LF only", Limits{}, "*1\r\n$4\nPING\r\n", "Protocol error: invalid bulk length"},
		{"bulk overflow", Limits{}, "*1\r\n$18446744073709551616\r\n", "Protocol error: invalid bulk length"},
		{"bulk line too long", Limits{}, "*1\r\n$" + strings.Repeat("9", 40) + "\r\n", "Protocol error: too big bulk count string"},
		{"bulk above MaxBulkLen", Limits{}, fmt.Sprintf("*1\r\n$%d\r\n", DefaultMaxBulkLen+1), "Protocol error: invalid bulk length"},
		{"bulk above small MaxBulkLen", small, "*1\r\n$6\r\nabcdef\r\n", "Protocol error: invalid bulk length"},
		// bulk body
		{"bulk longer than declared", Limits{}, "*1\r\n$3\r\nPING\r\n", "Protocol error: expected CRLF after bulk string"},
		{"bulk LF terminated", Limits{}, "*1\r\n$4\r\nPING\n\n", "Protocol error: expected CRLF after bulk string"},
		{"bulk CR only", Limits{}, "*1\r\n$4\r\nPING\rX", "Protocol error: expected CRLF after bulk string"},
		// command total
		{"command above small MaxCommandLen", small, "*2\r\n$5\r\nabcde\r\n$4\r\nabcd\r\n", "Protocol error: too big command"},
		// inline
		{"unterminated double quote", Limits{}, "ECHO \"abc\r\n", "Protocol error: unbalanced quotes in request"},
		{"unterminated single quote", Limits{}, "ECHO 'abc\n", "Protocol error: unbalanced quotes in request"},
		{"escaped closing quote", Limits{}, `ECHO "abc\"` + "\n", "Protocol error: unbalanced quotes in request"},
		{"backslash at end", Limits{}, `ECHO "abc\` + "\n", "Protocol error: unbalanced quotes in request"},
		{"escaped single quote at end", Limits{}, `ECHO 'abc\'` + "\n", "Protocol error: unbalanced quotes in request"},
		{"text after double quote", Limits{}, `ECHO "a"b` + "\n", "Protocol error: unbalanced quotes in request"},
		{"text after single quote", Limits{}, `ECHO 'a'b` + "\n", "Protocol error: unbalanced quotes in request"},
		{"inline above MaxInlineLen", Limits{}, strings.Repeat("a", DefaultMaxInlineLen+1) + "\r\n", "Protocol error: too big inline request"},
		{"inline CR counts", Limits{}, strings.Repeat("a", DefaultMaxInlineLen) + "\r\n", "Protocol error: too big inline request"},
		{"inline never ends", Limits{}, strings.Repeat("a", DefaultMaxInlineLen+1), "Protocol error: too big inline request"},
		{"inline above small MaxInlineLen", small, "a b c d e f\n", "Protocol error: too big inline request"},
		{"inline above small MaxArgs", small, "a b c d\n", "Protocol error: too many arguments in inline request"},
		{"inline above small MaxBulkLen", small, "a abcdef\n", "Protocol error: too big argument in inline request"},
		{"inline quoted above small MaxBulkLen", small, `'abcdef'` + "\n", "Protocol error: too big argument in inline request"},
		{"inline above small MaxCommandLen", small, "abcde abcd\n", "Protocol error: too big command"},
		// truncated streams
		{"eof after count", Limits{}, "*2\r\n$4\r\nPING\r\n", "unexpected EOF"},
		{"eof in count", Limits{}, "*1", "unexpected EOF"},
		{"eof after star", Limits{}, "*", "unexpected EOF"},
		{"eof in bulk length", Limits{}, "*1\r\n$4", "unexpected EOF"},
		{"eof in bulk", Limits{}, "*1\r\n$4\r\nPI", "unexpected EOF"},
		{"eof before bulk CRLF", Limits{}, "*1\r\n$4\r\nPING", "unexpected EOF"},
		{"eof inside bulk CRLF", Limits{}, "*1\r\n$4\r\nPING\r", "unexpected EOF"},
		{"eof in large bulk", Limits{}, "*1\r\n$100000\r\n" + strings.Repeat("x", 50000), "unexpected EOF"},
		{"inline without newline", Limits{}, "PING", "unexpected EOF"},
	}
	for _, tt := range tests {
		for _, ch := range chunkings {
			t.Run(tt.name+"/"+ch.name, func(t *testing.T) {
				r := NewReader(ch.wrap(strings.NewReader(tt.in)), tt.limits)
				got, err := readAll(r)
				if len(got) != 0 {
					t.Errorf("read %q before the error", got)
				}
				if err == nil || err.Error() != tt.want {
					t.Fatalf("error %v, want %q", err, tt.want)
				}
				var pe *ProtocolError
				if isProto := errors.As(err, &pe); isProto != strings.HasPrefix(tt.want, "Protocol error: ") {
					t.Errorf("error %#v: *ProtocolError is %v", err, isProto)
				}
				if strings.ContainsAny(err.Error(), "\r\n") {
					t.Errorf("error text %q would break the reply line", err)
				}
				if _, again := r.ReadCommand(); again != err {
					t.Errorf("second call returned %v, want the same error", again)
				}
			})
		}
	}
}

// TestReadCommandLimitsExact checks that each limit is inclusive: a command
// exactly at it is read, and the error above it is in TestReadCommandErrors.
func TestReadCommandLimitsExact(t *testing.T) {
	tests := []struct {
		name   string
		limits Limits
		in     string
		want   [][]string
	}{
		{"MaxArgs multibulk", small, "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n", cmds(args("a", "b", "c"))},
		{"MaxArgs inline", small, "a b c\n", cmds(args("a", "b", "c"))},
		{"MaxBulkLen", small, "*1\r\n$5\r\nabcde\r\n", cmds(args("abcde"))},
		{"MaxCommandLen", small, "*2\r\n$5\r\nabcde\r\n$3\r\nabc\r\n", cmds(args("abcde", "abc"))},
		{"MaxBulkLen inline", small, "abcde\n", cmds(args("abcde"))},
		{"MaxCommandLen inline", small, "abcde abc\n", cmds(args("abcde", "abc"))},
		{"MaxInlineLen", small, "0   4   89\n", cmds(args("0", "4", "89"))},
		{"MaxInlineLen with CR", small, "0  3  6  \r\n", cmds(args("0", "3", "6"))},
		{"MaxInlineLen trailing blanks", small, "a         \n", cmds(args("a"))},
		{"default MaxArgs", Limits{}, "*4096\r\n" + strings.Repeat("$0\r\n\r\n", 4096), cmds(make([]string, 4096))},
		{"default MaxBulkLen", Limits{}, fmt.Sprintf("*1\r\n$%d\r\n%s\r\n", DefaultMaxBulkLen, strings.Repeat("x", DefaultMaxBulkLen)),
			cmds(args(strings.Repeat("x", DefaultMaxBulkLen)))},
		{"default MaxCommandLen", Limits{}, fmt.Sprintf("*2\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", DefaultMaxBulkLen, strings.Repeat("x", DefaultMaxBulkLen), DefaultMaxBulkLen, strings.Repeat("y", DefaultMaxBulkLen)),
			cmds(args(strings.Repeat("x", DefaultMaxBulkLen), strings.Repeat("y", DefaultMaxBulkLen)))},
		{"default MaxInlineLen", Limits{}, strings.Repeat("x", DefaultMaxInlineLen) + "\n", cmds(args(strings.Repeat("x", DefaultMaxInlineLen)))},
	}
	for _, tt := range tests {
		for _, ch := range chunkings {
			t.Run(tt.name+"/"+ch.name, func(t *testing.T) {
				got, err := readAll(NewReader(ch.wrap(strings.NewReader(tt.in)), tt.limits))
				if err != io.EOF {
					t.Fatalf("error %v, want io.EOF", err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("got %d commands, want %d (first differs: %v)", len(got), len(tt.want), len(got) > 0)
				}
			})
		}
	}
}

func TestLimitsDefaults(t *testing.T) {
	want := Limits{MaxArgs: DefaultMaxArgs, MaxBulkLen: DefaultMaxBulkLen, MaxInlineLen: DefaultMaxInlineLen, MaxCommandLen: DefaultMaxCommandLen}
	if got := (Limits{}).withDefaults(); got != want {
		t.Errorf("zero Limits = %+v, want %+v", got, want)
	}
	if got := (Limits{MaxArgs: -1, MaxBulkLen: -1, MaxInlineLen: -1, MaxCommandLen: -1}).withDefaults(); got != want {
		t.Errorf("negative Limits = %+v, want %+v", got, want)
	}
	custom := Limits{MaxArgs: 1, MaxBulkLen: 2, MaxInlineLen: 3, MaxCommandLen: 4}
	if got := custom.withDefaults(); got != custom {
		t.Errorf("custom Limits = %+v, want them kept", got)
	}
}

func TestSetLimits(t *testing.T) {
	in := "*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n*2\r\n$4\r\nECHO\r\n$10\r\n0123456789\r\n"
	r := NewReader(strings.NewReader(in), Limits{MaxBulkLen: 4})
	if _, err := r.ReadCommand(); err != nil {
		t.Fatal(err)
	}
	r.SetLimits(Limits{})
	args, err := r.ReadCommand()
	if err != nil || string(args[1]) != "0123456789" {
		t.Fatalf("after SetLimits: %q, %v", args, err)
	}

	r = NewReader(strings.NewReader(in), Limits{})
	r.SetLimits(Limits{MaxBulkLen: 4})
	if _, err := r.ReadCommand(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadCommand(); err == nil || err.Error() != "Protocol error: invalid bulk length" {
		t.Fatalf("tightened limit not applied: %v", err)
	}
}

func TestBuffered(t *testing.T) {
	r := NewReader(strings.NewReader("PING\r\nPING\r\n"), Limits{})
	if _, err := r.ReadCommand(); err != nil {
		t.Fatal(err)
	}
	if got := r.Buffered(); got != 6 {
		t.Fatalf("Buffered = %d after the first of two pipelined commands, want 6", got)
	}
	if _, err := r.ReadCommand(); err != nil {
		t.Fatal(err)
	}
	if got := r.Buffered(); got != 0 {
		t.Fatalf("Buffered = %d after the last command, want 0", got)
	}
}

// TestArgsAreIndependent checks that arguments do not share memory the
// caller could clobber: the inline parser packs them into one array.
func TestArgsAreIndependent(t *testing.T) {
	for _, in := range []string{"aa bb cc\n", "*3\r\n$2\r\naa\r\n$2\r\nbb\r\n$2\r\ncc\r\n"} {
		r := NewReader(strings.NewReader(in+in), Limits{})
		first, err := r.ReadCommand()
		if err != nil {
			t.Fatal(err)
		}
		first[0] = append(first[0], "XYZ"...)
		first[1][0] = '!'
		second, err := r.ReadCommand()
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%s", first); got != "[aaXYZ !b cc]" {
			t.Errorf("%q: after appending to one argument the command is %s", in, got)
		}
		if got := fmt.Sprintf("%s", second); got != "[aa bb cc]" {
			t.Errorf("%q: the next command is %s after the caller changed the previous one", in, got)
		}
	}
}

// TestSkipsDoNotEndCommand checks that a stream of nothing but empty requests
// ends in io.EOF rather than an empty command.
func TestSkipsDoNotEndCommand(t *testing.T) {
	r := NewReader(strings.NewReader("*0\r\n\r\n*-1\r\n \t\n"), Limits{})
	if args, err := r.ReadCommand(); err != io.EOF {
		t.Fatalf("got %q, %v, want io.EOF", args, err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestReadErrorPassedThrough(t *testing.T) {
	boom := errors.New("connection reset")
	r := NewReader(io.MultiReader(strings.NewReader("*1\r\n$4\r\nPI"), errReader{boom}), Limits{})
	if _, err := r.ReadCommand(); !errors.Is(err, boom) {
		t.Fatalf("error %v, want %v", err, boom)
	}
	r = NewReader(io.MultiReader(strings.NewReader("PI"), errReader{boom}), Limits{})
	if _, err := r.ReadCommand(); !errors.Is(err, boom) {
		t.Fatalf("inline: error %v, want %v", err, boom)
	}
}

// allocated returns the bytes f allocates, the least of a few runs so that
// a background goroutine's allocation does not count.
func allocated(f func()) uint64 {
	var least uint64 = 1<<64 - 1
	for range 5 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		least = min(least, after.TotalAlloc-before.TotalAlloc)
	}
	return least
}

// TestNoAllocationFromClaimedLengths checks that a peer that announces large
// lengths and then sends little or nothing costs a bounded few kilobytes,
// not what it announced.
func TestNoAllocationFromClaimedLengths(t *testing.T) {
	const budget = readBufferSize + maxPrealloc + 2<<10 // the reader itself plus one capped preallocation
	tests := []struct {
		name string
		in   string
	}{
		{"max args, nothing else", fmt.Sprintf("*%d\r\n", DefaultMaxArgs)},
		{"max bulk, one byte", fmt.Sprintf("*1\r\n$%d\r\nx", DefaultMaxBulkLen)},
		{"max bulk, nothing", fmt.Sprintf("*2\r\n$%d\r\n", DefaultMaxBulkLen)},
		{"huge count", "*9223372036854775807\r\n"},
		{"huge bulk", "*1\r\n$9223372036854775807\r\n"},
		{"long header", "*" + strings.Repeat("9", 10000)},
		{"long inline, no newline", strings.Repeat("x", 1000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := allocated(func() {
				r := NewReader(strings.NewReader(tt.in), Limits{})
				if _, err := r.ReadCommand(); err == nil {
					t.Error("no error")
				}
			})
			if got > budget {
				t.Errorf("allocated %d bytes, budget %d", got, budget)
			}
		})
	}

	// A bulk that arrives in full may cost up to about twice its size while
	// it grows, never more.
	in := fmt.Sprintf("*1\r\n$%d\r\n%s\r\n", DefaultMaxBulkLen, strings.Repeat("x", DefaultMaxBulkLen))
	got := allocated(func() {
		r := NewReader(strings.NewReader(in), Limits{})
		if _, err := r.ReadCommand(); err != nil {
			t.Error(err)
		}
	})
	if limit := uint64(2*DefaultMaxBulkLen + budget); got > limit {
		t.Errorf("a full bulk of %d bytes allocated %d, budget %d", DefaultMaxBulkLen, got, limit)
	}
}

func TestSplitInlineRoundTrip(t *testing.T) {
	// Every byte written as \xHH inside double quotes must come back as is.
	var all bytes.Buffer
	for c := range 256 {
		all.WriteByte(byte(c))
	}
	line := quoteInline([][]byte{all.Bytes(), []byte("x")})
	got, err := splitInline(line, Limits{}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !bytes.Equal(got[0], all.Bytes()) || string(got[1]) != "x" {
		t.Fatalf("got %q", got)
	}
}

// quoteInline renders args as an inline command line, without its newline,
// that splitInline must read back exactly.
func quoteInline(args [][]byte) []byte {
	const hexDigits = "0123456789abcdef"
	var b []byte
	for i, a := range args {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, '"')
		for _, c := range a {
			b = append(b, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
		}
		b = append(b, '"')
	}
	return b
}

// ReadCommandShared reads what ReadCommand reads, small and large
// arguments, inline requests and errors alike; each result is checked
// before the next call, while it is valid.
func TestReadCommandSharedMatches(t *testing.T) {
	big := strings.Repeat("x", maxPrealloc+10)
	input := "*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$8\r\nmymaster\r\n" +
		"PING\r\n" +
		"*2\r\n$4\r\nECHO\r\n$" + strconv.Itoa(len(big)) + "\r\n" + big + "\r\n" +
		"*0\r\n" +
		"*1\r\n$4\r\nPING\r\n" +
		"*4\r\n$1\r\na\r\n$0\r\n\r\n$3\r\nbcd\r\n$1\r\ne\r\n" +
		"*1\r\n$3\r\nabcX\r\n" // malformed: no CRLF after the bulk
	want := NewReader(strings.NewReader(input), Limits{})
	got := NewReader(strings.NewReader(input), Limits{})
	for i := 0; ; i++ {
		w, werr := want.ReadCommand()
		g, gerr := got.ReadCommandShared()
		if fmt.Sprint(werr) != fmt.Sprint(gerr) || fmt.Sprintf("%q", w) != fmt.Sprintf("%q", g) {
			t.Fatalf("command %d: shared %q, %v; want %q, %v", i, g, gerr, w, werr)
		}
		if werr != nil {
			break
		}
	}
}

func TestReadCommandSharedAllocations(t *testing.T) {
	one := "*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$8\r\nmymaster\r\n"
	src := strings.NewReader("")
	r := NewReader(src, Limits{})
	src.Reset(strings.Repeat(one, 2))
	for range 2 {
		if _, err := r.ReadCommandShared(); err != nil {
			t.Fatal(err)
		}
	}
	n := testing.AllocsPerRun(100, func() {
		src.Reset(one)
		r.br.Reset(src)
		if _, err := r.ReadCommandShared(); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Errorf("%v allocations per request, want 0", n)
	}
}

// scriptedReader returns its chunks one per Read, then errWould until more
// are appended: a non-blocking socket.
type scriptedReader struct {
	chunks [][]byte
}

var errWould = errors.New("would block")

func (s *scriptedReader) Read(p []byte) (int, error) {
	if len(s.chunks) == 0 {
		return 0, errWould
	}
	n := copy(p, s.chunks[0])
	if s.chunks[0] = s.chunks[0][n:]; len(s.chunks[0]) == 0 {
		s.chunks = s.chunks[1:]
	}
	return n, nil
}

// ReadBufferedCommand takes only whole buffered requests of the common form
// and never reads; Fill reads once, and its error does not stick. A request
// cut at any byte is taken once its rest is filled in; anything else is
// left for ReadCommandShared.
func TestReadBufferedCommandAndFill(t *testing.T) {
	req := "*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$8\r\nmymaster\r\n"
	for cut := 0; cut <= len(req); cut++ {
		src := &scriptedReader{}
		r := NewReader(src, Limits{})
		if args, ok := r.ReadBufferedCommand(); ok {
			t.Fatalf("empty buffer: got %q", args)
		}
		if err := r.Fill(); err != errWould {
			t.Fatalf("Fill of nothing: %v, want the source's error", err)
		}
		src.chunks = append(src.chunks, []byte(req[:cut]))
		if cut > 0 {
			if err := r.Fill(); err != nil {
				t.Fatal(err)
			}
		}
		args, ok := r.ReadBufferedCommand()
		if cut < len(req) {
			if ok {
				t.Fatalf("cut at %d: took %q from part of a request", cut, args)
			}
			if r.Buffered() != cut {
				t.Fatalf("cut at %d: %d bytes left buffered", cut, r.Buffered())
			}
			// Fill does nothing while bytes are buffered (with none, it
			// reads); the general path reads the rest.
			src.chunks = append(src.chunks, []byte(req[cut:]))
			if err := r.Fill(); err != nil || (cut > 0 && r.Buffered() != cut) {
				t.Fatalf("cut at %d: Fill with bytes buffered: %v, %d buffered", cut, err, r.Buffered())
			}
			if args, err := r.ReadCommandShared(); err != nil || len(args) != 3 || string(args[2]) != "mymaster" {
				t.Fatalf("cut at %d: general path %q, %v", cut, args, err)
			}
			continue
		}
		if !ok || len(args) != 3 || string(args[0]) != "SENTINEL" || string(args[2]) != "mymaster" || r.Buffered() != 0 {
			t.Fatalf("whole request: %q, %v, %d left", args, ok, r.Buffered())
		}
	}
	// Forms the one-pass parse leaves to the general path: inline, empty,
	// a large argument, a malformed request. Nothing is consumed.
	for _, in := range []string{"PING\r\n", "*0\r\n", "*-1\r\n", "*1\r\n$5000\r\n" + strings.Repeat("x", 5000) + "\r\n", "*1\r\n$x\r\n"} {
		r := NewReader(strings.NewReader(in), Limits{})
		if err := r.Fill(); err != nil {
			t.Fatal(err)
		}
		before := r.Buffered()
		if args, ok := r.ReadBufferedCommand(); ok || r.Buffered() != before {
			t.Errorf("%q: took %q, %d of %d bytes left", trunc(in), args, r.Buffered(), before)
		}
	}
	// A sticky error stops both.
	r := NewReader(strings.NewReader("*1\r\n$x\r\n"), Limits{})
	if _, err := r.ReadCommand(); err == nil {
		t.Fatal("malformed request read")
	}
	if err := r.Fill(); err == nil {
		t.Error("Fill after a protocol error succeeded")
	}
}

func trunc(s string) string {
	if len(s) > 20 {
		return s[:20] + "..."
	}
	return s
}

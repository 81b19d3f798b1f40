package resp

import (
	"bufio"
	"errors"
	"io"
	"slices"
)

// Default limits. A sentinel's commands are short (names, addresses, a few
// options), so these are far below Redis' own and bound what one connection
// can make the server hold.
const (
	DefaultMaxArgs       = 4096      // arguments per command
	DefaultMaxBulkLen    = 512 << 10 // bytes per argument
	DefaultMaxInlineLen  = 64 << 10  // bytes per inline line, as Redis
	DefaultMaxCommandLen = 1 << 20   // bytes of all arguments together
)

// Limits bounds what one command may contain. A zero or negative field
// selects its default, so the zero Limits is the default set.
type Limits struct {
	// MaxArgs is the most arguments one command may have, the command name
	// included (default DefaultMaxArgs).
	MaxArgs int
	// MaxBulkLen is the longest argument, a bulk string of a multibulk
	// request or a word of an inline one (default DefaultMaxBulkLen).
	MaxBulkLen int
	// MaxInlineLen is the longest inline command line, counted up to but
	// not including its '\n' (default DefaultMaxInlineLen).
	MaxInlineLen int
	// MaxCommandLen is the most bytes all arguments of one command may add
	// up to (default DefaultMaxCommandLen). Without it MaxArgs bulks of
	// MaxBulkLen each would be gigabytes.
	MaxCommandLen int
}

func (l Limits) withDefaults() Limits {
	if l.MaxArgs <= 0 {
		l.MaxArgs = DefaultMaxArgs
	}
	if l.MaxBulkLen <= 0 {
		l.MaxBulkLen = DefaultMaxBulkLen
	}
	if l.MaxInlineLen <= 0 {
		l.MaxInlineLen = DefaultMaxInlineLen
	}
	if l.MaxCommandLen <= 0 {
		l.MaxCommandLen = DefaultMaxCommandLen
	}
	return l
}

// ProtocolError reports a request that breaks RESP or exceeds a limit. Its
// text is the one Redis uses, starting with "Protocol error: ", so a server
// can reply "-ERR " + err.Error() before it closes the connection.
type ProtocolError struct {
	msg string
}

// Error returns the Redis text, for example
// "Protocol error: invalid multibulk length". It never contains CR or LF.
func (e *ProtocolError) Error() string { return "Protocol error: " + e.msg }

func protoErr(msg string) error { return &ProtocolError{msg: msg} }

var (
	errMultibulkLen    = protoErr("invalid multibulk length")
	errBulkLen         = protoErr("invalid bulk length")
	errMultibulkHeader = protoErr("too big mbulk count string")
	errBulkHeader      = protoErr("too big bulk count string")
	errBulkCRLF        = protoErr("expected CRLF after bulk string")
	errInlineTooBig    = protoErr("too big inline request")
	errInlineQuotes    = protoErr("unbalanced quotes in request")
	errInlineTooMany   = protoErr("too many arguments in inline request")
	errInlineArgTooBig = protoErr("too big argument in inline request")
	errCommandTooBig   = protoErr("too big command")
)

const (
	// readBufferSize is the bufio buffer; bulks larger than it are read
	// straight into their destination.
	readBufferSize = 8 << 10
	// maxHeaderLen bounds a "*<n>\r\n" or "$<n>\r\n" line. The longest
	// valid one, an int64 with a sign, fits easily.
	maxHeaderLen = 32
	// maxPrealloc is how much of a bulk is allocated before its bytes
	// arrive; beyond it the buffer grows only as data is read, so a peer
	// that announces a large bulk and sends nothing costs at most this.
	maxPrealloc = 4 << 10
	// argsPrealloc caps the initial capacity of the argument slice for the
	// same reason.
	argsPrealloc = 16
)

// Reader reads commands from a client connection. It is not safe for
// concurrent use.
type Reader struct {
	br     *bufio.Reader
	limits Limits
	err    error

	// For ReadCommandShared: the argument slice and the bytes of the small
	// arguments, reused from one command to the next.
	shared bool
	args   [][]byte
	arena  []byte
}

// NewReader returns a Reader that reads commands from r within limits.
func NewReader(r io.Reader, limits Limits) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, readBufferSize), limits: limits.withDefaults()}
}

// SetLimits replaces the limits from the next command on, for example to
// loosen them once a client has authenticated.
func (r *Reader) SetLimits(limits Limits) { r.limits = limits.withDefaults() }

// Buffered reports how many bytes have been received but not yet parsed. A
// server can flush its replies when this is zero, which batches the replies
// to a pipeline into one write.
func (r *Reader) Buffered() int { return r.br.Buffered() }

// ReadCommand returns the arguments of the next command; there is always at
// least one. The slices are freshly allocated and belong to the caller.
// Empty multibulk requests and blank inline lines are skipped, as Redis does.
//
// The error is io.EOF when the stream ends between commands,
// io.ErrUnexpectedEOF when it ends inside one, a *ProtocolError for a
// malformed or oversized request, or the error of the underlying reader.
// Errors are sticky: the position in the stream is lost, so every later call
// returns the same error.
func (r *Reader) ReadCommand() ([][]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	for {
		args, err := r.readOne()
		if err != nil {
			r.err = err
			return nil, err
		}
		if len(args) > 0 {
			return args, nil
		}
	}
}

// ReadCommandShared is ReadCommand without allocating for the common
// request: the argument slice and arguments up to 4 KiB live in buffers
// the Reader reuses, so they are valid only until the next call (larger
// arguments are allocated as in ReadCommand). A server that copies what it
// keeps (a name, a channel) serves a steady stream of requests with no
// allocation per request.
func (r *Reader) ReadCommandShared() ([][]byte, error) {
	if cap(r.arena) > sharedArenaMax {
		r.arena = nil // one large request must not pin its memory
	}
	if cap(r.args) > sharedArgsMax {
		r.args = nil
	}
	r.shared = true
	args, err := r.ReadCommand()
	r.shared = false
	return args, err
}

// ReadBufferedCommand is ReadCommandShared for a request that is already
// wholly in the buffer: it never reads from the underlying reader, so a
// server can run it where a read must not wait (inside a poller callback).
// ok is false, and nothing is consumed, when the buffer does not begin with
// a complete multibulk request of the common form (every argument at most
// 4 KiB, within the limits, well formed); ReadCommandShared then reads the
// next request, whatever it is, with its errors. The arguments are valid
// until the next read, as with ReadCommandShared.
func (r *Reader) ReadBufferedCommand() (args [][]byte, ok bool) {
	if r.err != nil || r.br.Buffered() == 0 {
		return nil, false
	}
	if first, _ := r.br.Peek(1); first[0] != '*' {
		return nil, false
	}
	if cap(r.arena) > sharedArenaMax {
		r.arena = nil
	}
	if cap(r.args) > sharedArgsMax {
		r.args = nil
	}
	return r.readBufferedMultibulk()
}

// Fill reads once from the underlying reader into the empty buffer and
// returns that read's error, if any. Unlike the errors of ReadCommand, it
// is not kept: a source that reports a read that would block (a
// non-blocking socket) can be filled again later. It does nothing when
// bytes are buffered.
func (r *Reader) Fill() error {
	if r.err != nil {
		return r.err
	}
	if r.br.Buffered() > 0 {
		return nil
	}
	_, err := r.br.Peek(1)
	return err
}

// Beyond these capacities the shared buffers are dropped after a request.
const (
	sharedArenaMax = 64 << 10
	sharedArgsMax  = 1024
)

// readOne reads one request; an empty result means there was nothing to run.
func (r *Reader) readOne() ([][]byte, error) {
	first, err := r.br.Peek(1)
	if err != nil {
		return nil, err
	}
	if first[0] == '*' {
		return r.readMultibulk()
	}
	return r.readInline()
}

func (r *Reader) readMultibulk() ([][]byte, error) {
	if r.shared {
		if args, ok := r.readBufferedMultibulk(); ok {
			return args, nil
		}
	}
	_, _ = r.br.Discard(1) // the '*' that Peek saw
	n, err := r.readHeader(errMultibulkHeader, errMultibulkLen)
	if err != nil {
		return nil, err
	}
	switch {
	case n == 0 || n == -1:
		return nil, nil
	case n < 0 || n > int64(r.limits.MaxArgs):
		return nil, errMultibulkLen
	}
	var args [][]byte
	if r.shared {
		r.arena = r.arena[:0]
		args = r.args[:0]
	} else {
		args = make([][]byte, 0, min(int(n), argsPrealloc))
	}
	total := 0
	for range n {
		c, err := r.br.ReadByte()
		if err != nil {
			return nil, noEOF(err)
		}
		if c != '$' {
			return nil, protoErr("expected '$', got '" + printable(c) + "'")
		}
		l, err := r.readHeader(errBulkHeader, errBulkLen)
		if err != nil {
			return nil, err
		}
		if l < 0 || l > int64(r.limits.MaxBulkLen) {
			return nil, errBulkLen
		}
		if int(l) > r.limits.MaxCommandLen-total {
			return nil, errCommandTooBig
		}
		total += int(l)
		var arg []byte
		if r.shared && l <= maxPrealloc {
			arg, err = r.readSharedBulk(int(l))
		} else {
			arg, err = r.readBulk(int(l))
		}
		if err != nil {
			return nil, err
		}
		args = append(args, arg)
	}
	if r.shared {
		r.args = args[:0] // kept for the next command, grown as needed
	}
	return args, nil
}

// readBufferedMultibulk is the fast path of ReadCommandShared: when a whole
// well-formed request is already buffered, within the limits and with every
// argument small enough for the arena, it is parsed from the buffer in one
// pass, without a call per byte, and consumed. Anything else (a request cut
// by the buffer's end, a malformed or oversized one, a negative or
// zero-padded length) reports ok false and consumes nothing, and the general
// path reads it from the same place, with its errors.
func (r *Reader) readBufferedMultibulk() (args [][]byte, ok bool) {
	buf, _ := r.br.Peek(r.br.Buffered())
	n, i, ok := scanLength(buf, 1) // after the '*'
	if !ok || n == 0 || n > r.limits.MaxArgs {
		return nil, false
	}
	// Check the whole request before copying anything.
	total := 0
	j := i
	for range n {
		if j >= len(buf) || buf[j] != '$' {
			return nil, false
		}
		l, next, ok := scanLength(buf, j+1)
		if !ok || l > maxPrealloc || l > r.limits.MaxBulkLen || l > r.limits.MaxCommandLen-total {
			return nil, false
		}
		total += l
		j = next + l + 2
		if j > len(buf) || buf[j-2] != '\r' || buf[j-1] != '\n' {
			return nil, false
		}
	}
	r.arena = slices.Grow(r.arena[:0], total)
	args = r.args[:0]
	for range n {
		l, next, _ := scanLength(buf, i+1)
		start := len(r.arena)
		r.arena = append(r.arena, buf[next:next+l]...)
		args = append(args, r.arena[start:start+l:start+l])
		i = next + l + 2
	}
	r.args = args[:0]
	_, _ = r.br.Discard(i)
	return args, true
}

// scanLength reads the decimal length at buf[i:] and its CRLF, and returns
// it with the index after the CRLF. Only what the fast path takes is
// accepted: 1 to 9 digits, no sign, no leading zero (but "0").
func scanLength(buf []byte, i int) (n, next int, ok bool) {
	start := i
	for i < len(buf) && buf[i] >= '0' && buf[i] <= '9' {
		n = n*10 + int(buf[i]-'0')
		i++
		if i-start > 9 {
			return 0, 0, false
		}
	}
	digits := i - start
	if digits == 0 || (digits > 1 && buf[start] == '0') || i+1 >= len(buf) || buf[i] != '\r' || buf[i+1] != '\n' {
		return 0, 0, false
	}
	return n, i + 2, true
}

// readHeader reads the rest of a "*<n>\r\n" or "$<n>\r\n" line after its
// type byte. It reads byte by byte into a fixed array, so a peer that never
// sends the line end costs nothing beyond maxHeaderLen.
func (r *Reader) readHeader(tooLong, invalid error) (int64, error) {
	var buf [maxHeaderLen]byte
	n := 0
	for {
		c, err := r.br.ReadByte()
		if err != nil {
			return 0, noEOF(err)
		}
		if c == '\n' {
			break
		}
		if n == len(buf) {
			return 0, tooLong
		}
		buf[n] = c
		n++
	}
	if n == 0 || buf[n-1] != '\r' {
		return 0, invalid
	}
	v, ok := parseInt(buf[:n-1])
	if !ok {
		return 0, invalid
	}
	return v, nil
}

// parseInt accepts exactly the integers Redis' string2ll accepts: an
// optional '-', no '+', no leading zeros, no spaces, no overflow.
func parseInt(b []byte) (int64, bool) {
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg = true
		b = b[1:]
	}
	if len(b) == 0 || b[0] < '0' || b[0] > '9' || (b[0] == '0' && (len(b) > 1 || neg)) {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	if neg {
		if v > 1<<63 {
			return 0, false
		}
		return -int64(v), true
	}
	if v > 1<<63-1 {
		return 0, false
	}
	return int64(v), true
}

// readBulk reads n bytes and the CRLF after them. The buffer starts at most
// maxPrealloc large and at most doubles per step, so what is allocated stays
// within twice what has arrived plus maxPrealloc.
func (r *Reader) readBulk(n int) ([]byte, error) {
	buf := make([]byte, 0, min(n, maxPrealloc))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			next := make([]byte, len(buf), min(n, 2*cap(buf)))
			copy(next, buf)
			buf = next
		}
		k, err := io.ReadFull(r.br, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+k]
		if err != nil {
			return nil, noEOF(err)
		}
	}
	if err := r.readCRLF(); err != nil {
		return nil, err
	}
	return buf, nil
}

// readSharedBulk reads n bytes (at most maxPrealloc) and their CRLF into
// the arena. When the arena grows, the arguments read before keep pointing
// at the old array, which still holds them.
func (r *Reader) readSharedBulk(n int) ([]byte, error) {
	start := len(r.arena)
	r.arena = slices.Grow(r.arena, n)[:start+n]
	arg := r.arena[start : start+n : start+n]
	if _, err := io.ReadFull(r.br, arg); err != nil {
		return nil, noEOF(err)
	}
	if err := r.readCRLF(); err != nil {
		return nil, err
	}
	return arg, nil
}

// readCRLF reads the line end after a bulk, byte by byte: a local array
// handed to io.ReadFull would be allocated on the heap.
func (r *Reader) readCRLF() error {
	cr, err := r.br.ReadByte()
	if err != nil {
		return noEOF(err)
	}
	lf, err := r.br.ReadByte()
	if err != nil {
		return noEOF(err)
	}
	if cr != '\r' || lf != '\n' {
		return errBulkCRLF
	}
	return nil
}

func (r *Reader) readInline() ([][]byte, error) {
	line, err := r.readLine()
	if err != nil {
		return nil, err
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return splitInline(line, r.limits)
}

// readLine returns the next line without its '\n'. A line that fits in the
// bufio buffer is returned in place, valid only until the next read; only a
// longer one is copied, and only as far as it has arrived.
func (r *Reader) readLine() ([]byte, error) {
	limit := r.limits.MaxInlineLen
	var long []byte
	for {
		frag, err := r.br.ReadSlice('\n')
		switch {
		case err == nil:
			if len(long)+len(frag)-1 > limit {
				return nil, errInlineTooBig
			}
			if long == nil {
				return frag[:len(frag)-1], nil
			}
			long = append(long, frag[:len(frag)-1]...)
			return long, nil
		case errors.Is(err, bufio.ErrBufferFull):
			if len(long)+len(frag) > limit {
				return nil, errInlineTooBig
			}
			long = append(long, frag...)
		default:
			if len(long)+len(frag) > limit {
				return nil, errInlineTooBig
			}
			return nil, noEOF(err)
		}
	}
}

// noEOF turns io.EOF into io.ErrUnexpectedEOF for reads that start after a
// command has begun: the peer hung up in the middle of it.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func isSpace(c byte) bool {
	switch c {
	case ' ', '\t', '\r', '\n', '\v', '\f':
		return true
	}
	return false
}

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	default:
		return c - 'a' + 10
	}
}

// splitInline splits an inline command the way redis-cli users expect:
// words separated by white space; "..." with the escapes \n \r \t \b \a
// \xHH and backslash before any other byte taking it literally; '...' where
// only \' is an escape. A quote may start inside a word (a"b c" is one
// argument, "ab c"), but a closing quote must be followed by white space or
// the end of the line.
//
// The limits apply as to a multibulk request, so that a command is accepted
// in one form exactly when it is accepted in the other.
func splitInline(line []byte, limits Limits) ([][]byte, error) {
	i := 0
	for i < len(line) && isSpace(line[i]) {
		i++
	}
	if i == len(line) {
		return nil, nil
	}
	// Unescaping never lengthens a word, so every argument fits in one
	// backing array as long as the line; each argument gets a capped
	// capacity so appending to one cannot overwrite the next.
	buf := make([]byte, 0, len(line)-i)
	var args [][]byte
	for {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i == len(line) {
			return args, nil
		}
		if len(args) == limits.MaxArgs {
			return nil, errInlineTooMany
		}
		start := len(buf)
		var quote byte // 0 outside quotes, else the open quote
	word:
		for ; i < len(line); i++ {
			c := line[i]
			switch {
			case quote == 0:
				switch {
				case isSpace(c):
					break word
				case c == '"' || c == '\'':
					quote = c
				default:
					buf = append(buf, c)
				}
			case c == quote:
				if i+1 < len(line) && !isSpace(line[i+1]) {
					return nil, errInlineQuotes
				}
				quote = 0
				i++
				break word
			case quote == '\'':
				if c == '\\' && i+1 < len(line) && line[i+1] == '\'' {
					c = '\''
					i++
				}
				buf = append(buf, c)
			case c == '\\' && i+3 < len(line) && line[i+1] == 'x' && isHex(line[i+2]) && isHex(line[i+3]):
				buf = append(buf, unhex(line[i+2])<<4|unhex(line[i+3]))
				i += 3
			case c == '\\' && i+1 < len(line):
				i++
				switch c = line[i]; c {
				case 'n':
					c = '\n'
				case 'r':
					c = '\r'
				case 't':
					c = '\t'
				case 'b':
					c = '\b'
				case 'a':
					c = '\a'
				}
				buf = append(buf, c)
			default:
				buf = append(buf, c)
			}
		}
		if quote != 0 {
			return nil, errInlineQuotes
		}
		if len(buf)-start > limits.MaxBulkLen {
			return nil, errInlineArgTooBig
		}
		if len(buf) > limits.MaxCommandLen {
			return nil, errCommandTooBig
		}
		args = append(args, buf[start:len(buf):len(buf)])
	}
}

// printable renders a byte for an error message without letting a control
// character break the reply line.
func printable(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return string(rune(c))
	}
	const hexDigits = "0123456789abcdef"
	return `\x` + string([]byte{hexDigits[c>>4], hexDigits[c&0xf]})
}

package resp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
)

// value is one reply as the minimal test decoder sees it. It is written from
// the RESP3 specification, independently of Writer, so the round-trip tests
// compare two readings of the format rather than one with itself.
type value struct {
	kind  byte // the RESP type byte: + - : $ * % ~ > _ , #
	null  bool // "$-1" or "*-1"
	str   string
	elems []value // for * ~ >, and for % keys and values alternating

	// Set only in expected values: the reply is a double (RESP3) or its
	// text in a bulk (RESP2) and must parse back to exactly f. Comparing
	// numbers rather than text keeps the test from restating the
	// Writer's formatting.
	double bool
	f      float64
}

// match reports whether a decoded reply is the expected one.
func match(want, got value) bool {
	if want.double {
		if got.kind != want.kind || got.null || got.elems != nil {
			return false
		}
		f, err := strconv.ParseFloat(got.str, 64)
		if err != nil {
			return false
		}
		return f == want.f || (math.IsNaN(f) && math.IsNaN(want.f))
	}
	if want.kind != got.kind || want.null != got.null || want.str != got.str || len(want.elems) != len(got.elems) {
		return false
	}
	for i := range want.elems {
		if !match(want.elems[i], got.elems[i]) {
			return false
		}
	}
	return true
}

func (v value) String() string {
	switch {
	case v.null:
		return string(v.kind) + "null"
	case v.elems != nil || v.kind == '*' || v.kind == '%' || v.kind == '~' || v.kind == '>':
		return fmt.Sprintf("%c%v", v.kind, v.elems)
	default:
		return fmt.Sprintf("%c%q", v.kind, v.str)
	}
}

const maxDecodeDepth = 64

// decodeValue reads one complete reply.
func decodeValue(br *bufio.Reader) (value, error) {
	return decodeDepth(br, 0)
}

func decodeDepth(br *bufio.Reader, depth int) (value, error) {
	if depth > maxDecodeDepth {
		return value{}, errors.New("nested too deep")
	}
	line, err := br.ReadString('\n')
	if err != nil {
		return value{}, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return value{}, fmt.Errorf("bad line %q", line)
	}
	kind, body := line[0], line[1:len(line)-2]
	v := value{kind: kind}
	switch kind {
	case '+', '-':
		v.str = body
	case ':':
		if _, err := strconv.ParseInt(body, 10, 64); err != nil {
			return value{}, fmt.Errorf("bad integer %q", body)
		}
		v.str = body
	case ',':
		if _, err := strconv.ParseFloat(body, 64); err != nil {
			return value{}, fmt.Errorf("bad double %q", body)
		}
		v.str = body
	case '#':
		if body != "t" && body != "f" {
			return value{}, fmt.Errorf("bad boolean %q", body)
		}
		v.str = body
	case '_':
		if body != "" {
			return value{}, fmt.Errorf("bad null %q", body)
		}
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return value{}, fmt.Errorf("bad bulk length %q", body)
		}
		if n == -1 {
			v.null = true
			return v, nil
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(br, b); err != nil {
			return value{}, err
		}
		if string(b[n:]) != "\r\n" {
			return value{}, errors.New("bulk not followed by CRLF")
		}
		v.str = string(b[:n])
	case '*', '%', '~', '>':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 || (n == -1 && kind != '*') {
			return value{}, fmt.Errorf("bad aggregate length %q", line)
		}
		if n == -1 {
			v.null = true
			return v, nil
		}
		if kind == '%' {
			n *= 2
		}
		v.elems = []value{}
		for range n {
			e, err := decodeDepth(br, depth+1)
			if err != nil {
				return value{}, err
			}
			v.elems = append(v.elems, e)
		}
	default:
		return value{}, fmt.Errorf("unknown type %q", kind)
	}
	return v, nil
}

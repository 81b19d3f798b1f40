package sentinel

// globMatch reports whether s matches the Redis glob pattern: '*', '?',
// '[abc]', '[^abc]', '[a-z]' and '\' escapes, as PSUBSCRIBE, SENTINEL RESET
// and SENTINEL CONFIG GET accept them.
//
// Redis matches '*' by recursion, which is exponential on patterns such as
// "*a*a*a*b". Patterns come from clients and are matched against every event
// on the fan-out path, so this uses the linear-space greedy algorithm instead:
// every token other than '*' consumes exactly one byte, so remembering only
// the last '*' is enough and the cost is at most len(pattern)*len(s).
func globMatch(pattern, s string, nocase bool) bool {
	p, i := 0, 0
	star, starI := -1, 0
	for i < len(s) {
		if p < len(pattern) && pattern[p] == '*' {
			for p < len(pattern) && pattern[p] == '*' {
				p++
			}
			if p == len(pattern) {
				return true
			}
			star, starI = p, i
			continue
		}
		if p < len(pattern) {
			if ok, next := matchOne(pattern, p, s[i], nocase); ok {
				p, i = next, i+1
				continue
			}
		}
		if star < 0 {
			return false
		}
		// Let the last '*' swallow one more byte and retry from there.
		starI++
		p, i = star, starI
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// matchOne matches the single-byte token at pattern[p] (never '*') against
// c and returns where the next token starts.
func matchOne(pattern string, p int, c byte, nocase bool) (bool, int) {
	switch pattern[p] {
	case '?':
		return true, p + 1
	case '[':
		return matchClass(pattern, p+1, c, nocase)
	case '\\':
		if p+1 < len(pattern) {
			return sameByte(pattern[p+1], c, nocase), p + 2
		}
		// A trailing backslash is a literal backslash, as in Redis.
	}
	return sameByte(pattern[p], c, nocase), p + 1
}

// matchClass matches a bracket expression whose body starts at pattern[p]
// (just after '['). Like Redis, an unterminated class runs to the end of the
// pattern, a reversed range such as [z-a] is accepted, and a backslash
// escapes the next byte, which then compares case-sensitively even when
// nocase is set.
func matchClass(pattern string, p int, c byte, nocase bool) (bool, int) {
	negate := false
	if p < len(pattern) && pattern[p] == '^' {
		negate = true
		p++
	}
	match := false
	for p < len(pattern) && pattern[p] != ']' {
		switch {
		case pattern[p] == '\\' && p+1 < len(pattern):
			if pattern[p+1] == c {
				match = true
			}
			p += 2
		case p+2 < len(pattern) && pattern[p+1] == '-':
			lo, hi := pattern[p], pattern[p+2]
			if lo > hi {
				lo, hi = hi, lo
			}
			x := c
			if nocase {
				lo, hi, x = lower(lo), lower(hi), lower(c)
			}
			if x >= lo && x <= hi {
				match = true
			}
			p += 3
		default:
			if sameByte(pattern[p], c, nocase) {
				match = true
			}
			p++
		}
	}
	if p < len(pattern) {
		p++ // the closing ']'
	}
	return match != negate, p
}

func sameByte(a, b byte, nocase bool) bool {
	if nocase {
		return lower(a) == lower(b)
	}
	return a == b
}

func lower(b byte) byte {
	if b >= 'A' && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// msDuration is a flag for a Sentinel time setting. The API stores whole
// milliseconds, so a value the server would silently truncate is refused
// here instead; zero is refused because the API reads it as "use the
// default", which is what leaving the flag out already says.
type msDuration struct {
	d   time.Duration
	set bool
}

func (m *msDuration) String() string {
	if !m.set {
		return ""
	}
	return m.d.String()
}

func (m *msDuration) Type() string { return "duration" }

func (m *msDuration) Set(s string) error {
	d, err := parseMsDuration(s)
	if err != nil {
		return err
	}
	m.d, m.set = d, true
	return nil
}

func parseMsDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if _, err := strconv.ParseInt(s, 10, 64); err == nil {
		return 0, fmt.Errorf("%q has no unit: write a Go duration such as %sms", s, s)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 1s, 1500ms or 2m", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q is not positive", s)
	}
	if d%time.Millisecond != 0 {
		return 0, fmt.Errorf("%q is not a whole number of milliseconds", s)
	}
	return d, nil
}

// positiveUint32 is a count that must be at least 1. The API reads 0 as
// "use the default", so accepting 0 here would silently mean 1.
type positiveUint32 struct {
	n   uint32
	set bool
}

func (p *positiveUint32) String() string {
	if !p.set {
		return ""
	}
	return strconv.FormatUint(uint64(p.n), 10)
}

func (p *positiveUint32) Type() string { return "uint32" }

func (p *positiveUint32) Set(s string) error {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	if err != nil || n < 1 {
		return fmt.Errorf("%q is not a whole number of 1 or more", s)
	}
	p.n, p.set = uint32(n), true
	return nil
}

// outputFormat is the -o flag.
type outputFormat string

const (
	outputTable outputFormat = "table"
	outputJSON  outputFormat = "json"
)

func (o *outputFormat) String() string { return string(*o) }
func (o *outputFormat) Type() string   { return "table|json" }

func (o *outputFormat) Set(s string) error {
	switch outputFormat(s) {
	case outputTable, outputJSON:
		*o = outputFormat(s)
		return nil
	}
	return fmt.Errorf("%q is not an output format: want table or json", s)
}

// positiveDuration is --timeout: a zero or negative deadline would make
// every call fail before it starts.
type positiveDuration time.Duration

func (p *positiveDuration) String() string { return time.Duration(*p).String() }
func (p *positiveDuration) Type() string   { return "duration" }

func (p *positiveDuration) Set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not a duration such as 5s or 500ms", s)
	}
	if d <= 0 {
		return errors.New("the timeout must be positive")
	}
	*p = positiveDuration(d)
	return nil
}

// optionPairs reads `set`'s KEY VALUE list after the master's name.
func optionPairs(args []string) ([][2]string, error) {
	if len(args) == 0 || len(args)%2 != 0 {
		return nil, fmt.Errorf("want KEY VALUE pairs after the master's name, got %d word(s)", len(args))
	}
	out := make([][2]string, 0, len(args)/2)
	for i := 0; i < len(args); i += 2 {
		if strings.TrimSpace(args[i]) == "" {
			return nil, fmt.Errorf("option %d has an empty key", i/2+1)
		}
		out = append(out, [2]string{args[i], args[i+1]})
	}
	return out, nil
}

package policies

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration that YAML spells either in Go syntax
// ("8760h", "90m") or in whole days with a "d" suffix ("365d"), optionally
// followed by Go syntax ("1d12h"). Days are exactly 24 hours: certificate
// lifetimes are counted in elapsed time, not calendar days. Years are not
// accepted because their length is ambiguous.
type Duration time.Duration

// maxDays keeps days*24h inside an int64 nanosecond count.
const maxDays = int64(time.Duration(1<<63-1) / (24 * time.Hour))

// ParseDuration parses the Duration syntax described above.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	var total time.Duration
	rest := s
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		digits := s[:i]
		if digits == "" || strings.TrimLeft(digits, "0123456789") != "" {
			return 0, fmt.Errorf("invalid duration %q: days must be a whole number before \"d\"", s)
		}
		days, err := strconv.ParseInt(digits, 10, 64)
		if err != nil || days > maxDays {
			return 0, fmt.Errorf("invalid duration %q: too many days", s)
		}
		total = time.Duration(days) * 24 * time.Hour
		rest = s[i+1:]
	}
	if rest != "" {
		d, err := time.ParseDuration(rest)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q (use e.g. \"365d\" or \"8760h\")", s)
		}
		if d < 0 {
			return 0, fmt.Errorf("invalid duration %q: negative", s)
		}
		if total > time.Duration(1<<63-1)-d {
			return 0, fmt.Errorf("invalid duration %q: too long", s)
		}
		total += d
	}
	return Duration(total), nil
}

// UnmarshalYAML implements yaml.Unmarshaler. The error names the line
// because yaml.v3 does not tell an Unmarshaler which field it fills.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: duration must be a string such as \"365d\"", n.Line)
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = v
	return nil
}

// MarshalYAML implements yaml.Marshaler so that a Profile round-trips.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// String formats d in whole days when it is a multiple of 24h ("365d"),
// otherwise in Go syntax.
func (d Duration) String() string {
	td := time.Duration(d)
	if td > 0 && td%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(td/(24*time.Hour)), 10) + "d"
	}
	return td.String()
}

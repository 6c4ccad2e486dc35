package amendment

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxDuration is the longest duration ParseDuration accepts: no grant, TTL
// or extension in jitproxy is ever longer than a year.
const MaxDuration = 366 * 24 * time.Hour

// ParseDuration parses a positive duration as people write it: Go syntax
// ("90m", "1h30m") plus whole days ("2d"). Zero, negative, and units Go does
// not know ("10y") are errors that say what is accepted.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration: write e.g. 30m, 2h or 1d")
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok && !strings.ContainsAny(days, "hmsuµn") {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, fmt.Errorf("bad duration %q: write e.g. 30m, 2h or 1d", s)
		}
		d = time.Duration(n) * 24 * time.Hour
		if n > int(MaxDuration/(24*time.Hour)) {
			d = MaxDuration + 1
		}
	} else {
		var err error
		d, err = time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("bad duration %q: write e.g. 30m, 2h or 1d", s)
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("bad duration %q: it must be positive", s)
	}
	if d > MaxDuration {
		return 0, fmt.Errorf("bad duration %q: the longest allowed is 366d", s)
	}
	return d, nil
}

// FormatDuration writes d compactly for people: 2h, 1h30m, 45s, 3d.
func FormatDuration(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	if d%(24*time.Hour) == 0 {
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
	d = d.Round(time.Second)
	s := d.String()
	s = strings.Replace(s, "m0s", "m", 1)
	s = strings.Replace(s, "h0m", "h", 1)
	return s
}

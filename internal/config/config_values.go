package config

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// Size is a number of bytes. In the config it is a plain integer (bytes) or a
// number with one of the binary units B, KiB, MiB, GiB: "512B", "64KiB",
// "1MiB", "2GiB". A decimal fraction is accepted when it comes out as a whole
// number of bytes ("1.5MiB" is 1572864; "0.1KiB" is rejected). Decimal units
// (KB, MB) are rejected on purpose: half the world reads them as 1000, the
// other half as 1024.
type Size int64

// Size units.
const (
	Byte Size = 1
	KiB       = 1024 * Byte
	MiB       = 1024 * KiB
	GiB       = 1024 * MiB
)

var sizeUnits = []struct {
	name string
	size Size
}{
	{"GiB", GiB},
	{"MiB", MiB},
	{"KiB", KiB},
}

// maxNumberLen bounds the digits ParseSize and ParseRate look at, so a
// hostile config cannot make them do big-number arithmetic on megabytes.
const maxNumberLen = 40

// ParseSize parses a size: "4096", "512B", "64KiB", "1MiB", "1.5MiB", "2GiB".
// Negative values, unknown units, fractions of a byte and values that do not fit
// in an int64 are errors. Zero is accepted here; callers decide whether it is
// meaningful.
func ParseSize(s string) (Size, error) {
	if s == "" {
		return 0, errors.New("empty size")
	}
	if strings.HasPrefix(s, "-") {
		return 0, fmt.Errorf("size %q must not be negative", s)
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return 0, fmt.Errorf("bad size %q: no spaces allowed (write e.g. 64KiB)", s)
	}
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], s[i:]
	mult := Byte
	switch unit {
	case "", "B":
	case "KiB":
		mult = KiB
	case "MiB":
		mult = MiB
	case "GiB":
		mult = GiB
	default:
		return 0, fmt.Errorf("bad size %q: unknown unit %q (use B, KiB, MiB or GiB)", s, unit)
	}
	if !isDecimal(num) {
		return 0, fmt.Errorf("bad size %q: want a number followed by B, KiB, MiB or GiB", s)
	}
	intPart, frac, _ := strings.Cut(num, ".")
	// Exact arithmetic: (digits * unit) / 10^len(frac) must be a whole number.
	n, ok := new(big.Int).SetString(intPart+frac, 10)
	if !ok {
		return 0, fmt.Errorf("bad size %q", s)
	}
	n.Mul(n, big.NewInt(int64(mult)))
	if len(frac) > 0 {
		den := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(len(frac))), nil)
		var rem big.Int
		n.QuoRem(n, den, &rem)
		if rem.Sign() != 0 {
			return 0, fmt.Errorf("bad size %q: not a whole number of bytes", s)
		}
	}
	if !n.IsInt64() {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return Size(n.Int64()), nil
}

// isDecimal reports whether s is digits with at most one inner decimal point
// ("1", "1.5"; not "", ".5", "1.", "1.2.3") and not absurdly long.
func isDecimal(s string) bool {
	if s == "" || len(s) > maxNumberLen {
		return false
	}
	intPart, frac, hasDot := strings.Cut(s, ".")
	if intPart == "" || hasDot && frac == "" {
		return false
	}
	for _, c := range intPart + frac {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// String formats s with the largest unit that represents it exactly with at
// most two decimals ("64KiB", "1.5MiB", "1000B"). ParseSize(s.String()) == s.
func (s Size) String() string {
	if s < 0 {
		return strconv.FormatInt(int64(s), 10) + "B"
	}
	for _, u := range sizeUnits {
		if s < u.size {
			continue
		}
		if s%u.size == 0 {
			return strconv.FormatInt(int64(s/u.size), 10) + u.name
		}
		// Up to two decimals, only when exact: 1.5MiB, 1.25GiB.
		for _, d := range []int64{10, 100} {
			if (int64(s)%int64(u.size))*d%int64(u.size) == 0 {
				whole := int64(s / u.size)
				frac := (int64(s) % int64(u.size)) * d / int64(u.size)
				width := 1
				if d == 100 {
					width = 2
				}
				return fmt.Sprintf("%d.%0*d%s", whole, width, frac, u.name)
			}
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

// MarshalText implements encoding.TextMarshaler.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Rate is a token-bucket limit: PerSecond tokens are added every second, up to
// Burst. For message, frame and handshake limits a token is one event; for the
// bytes limit a token is one byte.
//
// In the config a rate is "N/s", "N/m" or "N/h" (N may have decimals: "0.5/s");
// for bytes N is a Size ("1MiB/s") and the burst is a Size too ("4MiB").
type Rate struct {
	PerSecond float64
	Burst     int64
}

var rateUnits = []struct {
	suffix  string
	seconds float64
}{
	{"s", 1},
	{"m", 60},
	{"h", 3600},
}

// ParseRate parses an event rate: "20/s", "100/m", "5/h", "0.5/s". It returns
// events per second, which is always > 0: a zero rate would block everything,
// so "no limit" is spelt by leaving the limit out.
func ParseRate(s string) (float64, error) {
	num, per, err := splitRate(s)
	if err != nil {
		return 0, err
	}
	if !isDecimal(num) {
		return 0, fmt.Errorf("bad rate %q: want a number before the slash, like 20/s", s)
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsInf(n, 0) {
		return 0, fmt.Errorf("bad rate %q", s)
	}
	if n <= 0 {
		return 0, fmt.Errorf("rate %q must be greater than zero (leave the limit out for no limit)", s)
	}
	return n / per, nil
}

// ParseByteRate parses a byte rate: "1MiB/s", "64KiB/s", "10GiB/h", "4096/s".
// It returns bytes per second, always > 0.
func ParseByteRate(s string) (float64, error) {
	num, per, err := splitRate(s)
	if err != nil {
		return 0, err
	}
	n, err := ParseSize(num)
	if err != nil {
		return 0, fmt.Errorf("bad byte rate %q: %v", s, err)
	}
	if n <= 0 {
		return 0, fmt.Errorf("rate %q must be greater than zero (leave the limit out for no limit)", s)
	}
	return float64(n) / per, nil
}

// splitRate splits "N/u" into N and the seconds in one u.
func splitRate(s string) (string, float64, error) {
	if strings.ContainsAny(s, " \t\r\n") {
		return "", 0, fmt.Errorf("bad rate %q: no spaces allowed (write e.g. 20/s)", s)
	}
	num, unit, ok := strings.Cut(s, "/")
	if !ok {
		return "", 0, fmt.Errorf("bad rate %q: want N/s, N/m or N/h", s)
	}
	for _, u := range rateUnits {
		if unit == u.suffix {
			return num, u.seconds, nil
		}
	}
	return "", 0, fmt.Errorf("bad rate %q: unit must be /s, /m or /h", s)
}

// formatPer formats an events- or bytes-per-second value in the unit that
// shows it as a whole number (100/m rather than 1.6666666666666667/s).
func formatPer(perSecond float64, bytes bool) string {
	for _, u := range rateUnits {
		n := perSecond * u.seconds
		r := math.Round(n)
		if r >= 1 && math.Abs(n-r) <= 1e-9*r {
			if bytes && r <= math.MaxInt64/2 {
				return Size(int64(r)).String() + "/" + u.suffix
			}
			return strconv.FormatFloat(r, 'f', -1, 64) + "/" + u.suffix
		}
	}
	return strconv.FormatFloat(perSecond, 'g', -1, 64) + "/s"
}

// String formats an event rate: "20/s burst 40", "100/m burst 100".
func (r Rate) String() string {
	return formatPer(r.PerSecond, false) + " burst " + strconv.FormatInt(r.Burst, 10)
}

// BytesString formats a byte rate: "1MiB/s burst 4MiB".
func (r Rate) BytesString() string {
	return formatPer(r.PerSecond, true) + " burst " + Size(r.Burst).String()
}

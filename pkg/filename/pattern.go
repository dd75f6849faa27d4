package filename

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// token is one field of a Joda-style date pattern: a run of one pattern
// letter, or literal text.
type token struct {
	letter  byte // 0 for literal
	count   int
	literal string
}

// letters are the supported Joda pattern letters.
var letters = map[byte]string{
	'y': "year (yyyy: 2026, yy: 26)",
	'M': "month (M: 1, MM: 01, MMM: Jan, MMMM: January)",
	'd': "day of month (d: 5, dd: 05)",
	'H': "hour 0-23 (H, HH)",
	'h': "hour 1-12 (h, hh)",
	'm': "minute (m, mm)",
	's': "second (s, ss)",
	'S': "fraction of a second (S to SSSSSSSSS)",
	'a': "AM or PM",
	'E': "day of week (EEE: Mon, EEEE: Monday)",
	'z': "zone abbreviation (PST)",
	'Z': "zone offset (Z: -0800, ZZ: -08:00)",
}

// parsePattern reads a Joda-style pattern. Letters a-z and A-Z are pattern
// letters; text in single quotes is literal, and two single quotes in a
// row are one quote.
func parsePattern(p string) ([]token, error) {
	if p == "" {
		return nil, fmt.Errorf("the format pattern is empty")
	}
	var out []token
	for i := 0; i < len(p); {
		c := p[i]
		switch {
		case c == '\'':
			// '' is a literal quote; otherwise quoted text up to the next
			// lone quote.
			if i+1 < len(p) && p[i+1] == '\'' {
				out = append(out, token{literal: "'"})
				i += 2
				continue
			}
			var lit strings.Builder
			j := i + 1
			for ; j < len(p); j++ {
				if p[j] == '\'' {
					if j+1 < len(p) && p[j+1] == '\'' {
						lit.WriteByte('\'')
						j++
						continue
					}
					break
				}
				lit.WriteByte(p[j])
			}
			if j >= len(p) {
				return nil, fmt.Errorf("the quoted text starting at pattern character %d is never closed", i+1)
			}
			out = append(out, token{literal: lit.String()})
			i = j + 1
		case (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'):
			if _, ok := letters[c]; !ok {
				return nil, fmt.Errorf("%q is not a pattern letter; quote literal text, e.g. 'T'", string(c))
			}
			j := i
			for j < len(p) && p[j] == c {
				j++
			}
			n := j - i
			if err := checkCount(c, n); err != nil {
				return nil, err
			}
			out = append(out, token{letter: c, count: n})
			i = j
		default:
			out = append(out, token{literal: string(c)})
			i++
		}
	}
	return out, nil
}

func checkCount(c byte, n int) error {
	max := map[byte]int{'y': 4, 'M': 4, 'd': 2, 'H': 2, 'h': 2, 'm': 2, 's': 2, 'S': 9, 'a': 1, 'E': 4, 'z': 1, 'Z': 2}[c]
	if n > max || (c == 'y' && n == 3) || (c == 'E' && n < 3) {
		return fmt.Errorf("%q is not a valid run of %q: %s", strings.Repeat(string(c), n), string(c), letters[c])
	}
	return nil
}

func pad(b *strings.Builder, v, width int) {
	s := strconv.Itoa(v)
	for i := len(s); i < width; i++ {
		b.WriteByte('0')
	}
	b.WriteString(s)
}

// formatTime writes t in the pattern.
func formatTime(b *strings.Builder, t time.Time, layout []token) {
	for _, tok := range layout {
		if tok.letter == 0 {
			b.WriteString(tok.literal)
			continue
		}
		n := tok.count
		switch tok.letter {
		case 'y':
			if n == 2 {
				pad(b, t.Year()%100, 2)
			} else {
				pad(b, t.Year(), n)
			}
		case 'M':
			switch n {
			case 1, 2:
				pad(b, int(t.Month()), n)
			case 3:
				b.WriteString(t.Month().String()[:3])
			default:
				b.WriteString(t.Month().String())
			}
		case 'd':
			pad(b, t.Day(), n)
		case 'H':
			pad(b, t.Hour(), n)
		case 'h':
			h := t.Hour() % 12
			if h == 0 {
				h = 12
			}
			pad(b, h, n)
		case 'm':
			pad(b, t.Minute(), n)
		case 's':
			pad(b, t.Second(), n)
		case 'S':
			frac := fmt.Sprintf("%09d", t.Nanosecond())
			b.WriteString(frac[:n])
		case 'a':
			if t.Hour() < 12 {
				b.WriteString("AM")
			} else {
				b.WriteString("PM")
			}
		case 'E':
			if n == 3 {
				b.WriteString(t.Weekday().String()[:3])
			} else {
				b.WriteString(t.Weekday().String())
			}
		case 'z':
			name, _ := t.Zone()
			b.WriteString(name)
		case 'Z':
			if n == 1 {
				b.WriteString(t.Format("-0700"))
			} else {
				b.WriteString(t.Format("-07:00"))
			}
		}
	}
}

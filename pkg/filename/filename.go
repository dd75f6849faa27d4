// Package filename parses and renders the filename templates of
// destinations, such as
//
//	C360_{{now|local:'America/Los_Angeles'|format:'MM-dd-yyyy'}}.csv.gz
//	customer_360/{{now|next_day|format:'yyyy/MM/dd'}}/Customer_360.tsv.gz
//	{{output_name}}_{{file_number|pad:4}}.parquet
//
// Text outside `{{ }}` is kept as it is (slashes make folders). Inside, a
// value (`now`, `file_number`, `output_name`) is followed by filters:
// `local:'<IANA zone>'`, `utc`, `next_day`, `format:'<Joda pattern>'` for
// `now`, and `pad:<width>` for `file_number`. A template is parsed once, when
// a destination is saved, and rendered once per delivery (per file) against
// the delivery's clock. Compression extensions are never added: the template
// says the whole name.
package filename

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // zones work on images without a zoneinfo database
)

// Values are what a template is rendered with.
type Values struct {
	// Now is the delivery's time; templates see it in UTC unless a local
	// filter says otherwise.
	Now time.Time
	// FileNumber numbers the files of a split output, from 1.
	FileNumber int
	// OutputName is the name the caller gave the delivery's output.
	OutputName string
}

// Template is a parsed filename template.
type Template struct {
	parts      []part
	fileNumber bool
}

type part struct {
	literal string // when expr is nil
	expr    *expr
}

type exprKind int

const (
	exprNow exprKind = iota + 1
	exprFileNumber
	exprOutputName
)

type expr struct {
	kind    exprKind
	loc     *time.Location
	nextDay int
	layout  []token
	pad     int
}

// Error is a parse error: where in the template and why.
type Error struct {
	Offset int
	Reason string
}

func (e *Error) Error() string {
	return fmt.Sprintf("at character %d: %s", e.Offset+1, e.Reason)
}

// MaxLength bounds a template; S3 keys are at most 1,024 bytes.
const MaxLength = 1024

// Parse reads a template, answering an *Error that says where and why it is
// wrong.
func Parse(s string) (*Template, error) {
	if len(s) > MaxLength {
		return nil, &Error{Offset: MaxLength, Reason: fmt.Sprintf("a template is at most %d bytes", MaxLength)}
	}
	t := &Template{}
	for i := 0; i < len(s); {
		open := strings.Index(s[i:], "{{")
		closeStray := strings.Index(s[i:], "}}")
		if closeStray >= 0 && (open < 0 || closeStray < open) {
			return nil, &Error{Offset: i + closeStray, Reason: "'}}' without an opening '{{'"}
		}
		if open < 0 {
			t.parts = append(t.parts, part{literal: s[i:]})
			break
		}
		if open > 0 {
			t.parts = append(t.parts, part{literal: s[i : i+open]})
		}
		start := i + open + 2
		end := strings.Index(s[start:], "}}")
		if end < 0 {
			return nil, &Error{Offset: i + open, Reason: "'{{' is never closed with '}}'"}
		}
		if nested := strings.Index(s[start:start+end], "{{"); nested >= 0 {
			return nil, &Error{Offset: start + nested, Reason: "'{{' inside '{{ }}'"}
		}
		e, err := parseExpr(s[start:start+end], start)
		if err != nil {
			return nil, err
		}
		if e.kind == exprFileNumber {
			t.fileNumber = true
		}
		t.parts = append(t.parts, part{expr: e})
		i = start + end + 2
	}
	return t, nil
}

// UsesFileNumber reports whether the template numbers files, which a split
// output needs so that its files get distinct names.
func (t *Template) UsesFileNumber() bool { return t.fileNumber }

// Render fills the template in.
func (t *Template) Render(v Values) string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.expr == nil {
			b.WriteString(p.literal)
			continue
		}
		switch p.expr.kind {
		case exprNow:
			at := v.Now.UTC()
			if p.expr.loc != nil {
				at = at.In(p.expr.loc)
			}
			at = at.AddDate(0, 0, p.expr.nextDay)
			formatTime(&b, at, p.expr.layout)
		case exprFileNumber:
			n := strconv.Itoa(v.FileNumber)
			for i := len(n); i < p.expr.pad; i++ {
				b.WriteByte('0')
			}
			b.WriteString(n)
		case exprOutputName:
			b.WriteString(v.OutputName)
		}
	}
	return b.String()
}

// parseExpr reads `value|filter|filter:'arg'`; offset locates it in the
// template for errors.
func parseExpr(src string, offset int) (*expr, error) {
	segs, err := splitFilters(src, offset)
	if err != nil {
		return nil, err
	}
	head := segs[0]
	e := &expr{}
	switch strings.TrimSpace(head.text) {
	case "now":
		e.kind = exprNow
	case "file_number":
		e.kind = exprFileNumber
	case "output_name":
		e.kind = exprOutputName
	case "":
		return nil, &Error{Offset: head.offset, Reason: "empty '{{ }}': write now, file_number or output_name"}
	default:
		return nil, &Error{Offset: head.offset, Reason: fmt.Sprintf("unknown value %q: write now, file_number or output_name", strings.TrimSpace(head.text))}
	}
	for _, f := range segs[1:] {
		name, arg, hasArg := strings.Cut(f.text, ":")
		name = strings.TrimSpace(name)
		bad := func(reason string) error { return &Error{Offset: f.offset, Reason: reason} }
		switch {
		case e.kind == exprNow && name == "local":
			zone, err := quoted(arg, hasArg)
			if err != nil {
				return nil, bad("local needs a quoted time zone, e.g. local:'America/Los_Angeles'")
			}
			loc, err := time.LoadLocation(zone)
			if err != nil || zone == "" || zone == "Local" {
				return nil, bad(fmt.Sprintf("unknown time zone %q: use an IANA name such as America/Los_Angeles", zone))
			}
			e.loc = loc
		case e.kind == exprNow && name == "utc" && !hasArg:
			e.loc = time.UTC
		case e.kind == exprNow && name == "next_day" && !hasArg:
			e.nextDay++
		case e.kind == exprNow && name == "format":
			pattern, err := quoted(arg, hasArg)
			if err != nil {
				return nil, bad("format needs a quoted pattern, e.g. format:'yyyy-MM-dd'")
			}
			if e.layout != nil {
				return nil, bad("format is given twice")
			}
			if e.layout, err = parsePattern(pattern); err != nil {
				return nil, bad(err.Error())
			}
		case e.kind == exprFileNumber && name == "pad":
			w, err := strconv.Atoi(strings.TrimSpace(arg))
			if !hasArg || err != nil || w < 1 || w > 12 {
				return nil, bad("pad needs a width from 1 to 12, e.g. pad:4")
			}
			e.pad = w
		default:
			return nil, bad(fmt.Sprintf("%q is not a filter of %s", f.text, strings.TrimSpace(head.text)))
		}
	}
	if e.kind == exprNow && e.layout == nil {
		return nil, &Error{Offset: head.offset, Reason: "now needs a format, e.g. {{now|format:'yyyy-MM-dd'}}"}
	}
	return e, nil
}

type segment struct {
	text   string
	offset int
}

// splitFilters cuts at `|` outside single quotes.
func splitFilters(src string, offset int) ([]segment, error) {
	var segs []segment
	start, inQuote := 0, false
	for i := 0; i < len(src); i++ {
		switch src[i] {
		case '\'':
			inQuote = !inQuote
		case '|':
			if !inQuote {
				segs = append(segs, segment{src[start:i], offset + start})
				start = i + 1
			}
		}
	}
	if inQuote {
		return nil, &Error{Offset: offset + strings.LastIndexByte(src, '\''), Reason: "a quote is never closed"}
	}
	return append(segs, segment{src[start:], offset + start}), nil
}

// quoted reads 'text', where two single quotes in a row stand for one.
func quoted(arg string, hasArg bool) (string, error) {
	arg = strings.TrimSpace(arg)
	if !hasArg || len(arg) < 2 || arg[0] != '\'' || arg[len(arg)-1] != '\'' {
		return "", fmt.Errorf("not quoted")
	}
	return strings.ReplaceAll(arg[1:len(arg)-1], "''", "'"), nil
}

package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

const none = "—"

func bad(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) }

// sig formats v with 3 significant digits and no exponent.
func sig(v float64) string {
	if bad(v) {
		return none
	}
	a := math.Abs(v)
	switch {
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strings.TrimSuffix(strconv.FormatFloat(v, 'f', 1, 64), ".0")
	case a >= 1:
		return trimZeros(strconv.FormatFloat(v, 'f', 2, 64))
	case a == 0:
		return "0"
	}
	return trimZeros(strconv.FormatFloat(v, 'g', 2, 64))
}

func trimZeros(s string) string {
	if !strings.Contains(s, ".") {
		return s
	}
	return strings.TrimSuffix(strings.TrimRight(s, "0"), ".")
}

// timeUnit picks the unit for seconds, from ns to s.
func timeUnit(sec float64) (factor float64, unit string) {
	a := math.Abs(sec)
	switch {
	case a >= 1:
		return 1, "s"
	case a >= 1e-3:
		return 1e3, "ms"
	case a >= 1e-6:
		return 1e6, "µs"
	}
	return 1e9, "ns"
}

// dur formats seconds with a unit from ns to s.
func dur(sec float64) string {
	if bad(sec) {
		return none
	}
	f, u := timeUnit(sec)
	return sig(sec*f) + " " + u
}

// spreadTime is spread for times given in a unit of toSec seconds, with
// the range in the median's unit: "345 µs (314–422)".
func spreadTime(s sample, toSec float64) string {
	if !s.ok() {
		return none
	}
	m := s.med() * toSec
	f, u := timeUnit(m)
	if len(s) == 1 || s.min() == s.max() {
		return sig(m*f) + " " + u
	}
	return fmt.Sprintf("%s %s (%s–%s)", sig(m*f), u, sig(s.min()*toSec*f), sig(s.max()*toSec*f))
}

// median keeps the figure of a spread cell: "345 µs (314–422)" -> "345 µs".
func median(cell string) string {
	m, _, _ := strings.Cut(cell, " (")
	return m
}

func ms(v float64) string { return dur(v / 1e3) }
func us(v float64) string { return dur(v / 1e6) }
func ns(v float64) string { return dur(v / 1e9) }

// count formats a whole number with thousands separators.
func count(v float64) string {
	if bad(v) {
		return none
	}
	s := strconv.FormatFloat(math.Round(v), 'f', 0, 64)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func mib(kib float64) string {
	if bad(kib) {
		return none
	}
	return sig(kib/1024) + " MiB"
}

func mb(bytes float64) string {
	if bad(bytes) || bytes == 0 {
		return none
	}
	return sig(bytes/1e6) + " MB"
}

// ratio is a/b as "1.74×".
func ratio(a, b float64) string {
	if bad(a) || bad(b) || b == 0 {
		return none
	}
	return sig(a/b) + "×"
}

// spread formats a sample's median with its range: "7.8 (7.2–11.3)".
func spread(s sample, f func(float64) string) string {
	if !s.ok() {
		return none
	}
	if len(s) == 1 || s.min() == s.max() {
		return f(s.med())
	}
	return fmt.Sprintf("%s (%s–%s)", f(s.med()), f(s.min()), f(s.max()))
}

// table is a markdown table.
type table struct {
	Head []string
	Rows [][]string
	Left bool // every column left-aligned (default: figures right-aligned)
}

func (t *table) add(cells ...string) { t.Rows = append(t.Rows, cells) }

func (t table) Markdown() string {
	if len(t.Rows) == 0 {
		return ""
	}
	var b strings.Builder
	row := func(cells []string) {
		b.WriteString("|")
		for _, c := range cells {
			b.WriteString(" " + strings.ReplaceAll(c, "|", `\|`) + " |")
		}
		b.WriteString("\n")
	}
	row(t.Head)
	b.WriteString("|")
	for i := range t.Head {
		if i == 0 || t.Left {
			b.WriteString("---|")
		} else {
			b.WriteString("---:|")
		}
	}
	b.WriteString("\n")
	for _, r := range t.Rows {
		row(r)
	}
	return b.String()
}

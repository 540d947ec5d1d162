package main

import (
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// tablePrinter draws boxed tables with a header row, like etcdctl's table
// format. Snapshot restore has no table form and prints as simple, as in
// etcdutl.
type tablePrinter struct {
	*simplePrinter
}

var _ printer = (*tablePrinter)(nil)

func (p *tablePrinter) SnapshotStatus(s snapshotStatus) error {
	return writeTable(p.out, snapshotStatusHeader, [][]string{snapshotStatusRow(s)})
}

// MemberIDs draws an ID and NAME row per name; a name that does not print on
// one line is shown quoted.
func (p *tablePrinter) MemberIDs(ids []memberID) error {
	rows := memberIDRows(ids)
	for _, row := range rows {
		row[1] = printableCell(row[1])
	}
	return writeTable(p.out, memberIDHeader, rows)
}

// printableCell returns s as is when it prints on one line, and quoted with
// Go escapes otherwise, so table cells stay aligned.
func printableCell(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0 {
		return s
	}
	return strconv.Quote(s)
}

// writeTable draws header and rows with every column as wide as its widest
// cell:
//
//	+-----+-------+
//	| KEY | VALUE |
//	+-----+-------+
//	| a   | 1     |
//	+-----+-------+
func writeTable(w io.Writer, header []string, rows [][]string) error {
	widths := make([]int, len(header))
	for i, h := range header {
		widths[i] = utf8.RuneCountInString(h)
	}
	for _, row := range rows {
		for i, cell := range row {
			widths[i] = max(widths[i], utf8.RuneCountInString(cell))
		}
	}
	var sep strings.Builder
	sep.WriteString("+")
	for _, wd := range widths {
		sep.WriteString(strings.Repeat("-", wd+2))
		sep.WriteString("+")
	}
	line := func(cells []string) string {
		var b strings.Builder
		b.WriteString("|")
		for i, wd := range widths {
			var cell string
			if i < len(cells) {
				cell = cells[i]
			}
			b.WriteString(" ")
			b.WriteString(cell)
			b.WriteString(strings.Repeat(" ", wd-utf8.RuneCountInString(cell)))
			b.WriteString(" |")
		}
		return b.String()
	}
	ew := &errWriter{w: w}
	ew.println(sep.String())
	ew.println(line(header))
	ew.println(sep.String())
	for _, row := range rows {
		ew.println(line(row))
	}
	ew.println(sep.String())
	return ew.err
}

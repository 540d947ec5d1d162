package main

import (
	"strings"
	"testing"
)

// FuzzParseTxn: whatever arrives on kvctl txn's stdin, the parser answers
// with a transaction or an error naming the line, never a panic; and what
// it accepts builds compares and operations the SDK accepts or refuses with
// an error, never a panic.
func FuzzParseTxn(f *testing.F) {
	for _, seed := range []string{
		"value(\"k\") = \"v\"\n\nput k v2\n\nget k\n",
		"mod(\"k\") > \"3\"\nver(\"a\") != \"0\"\n\ndel a --prefix\n\nget a b --limit=1\n",
		"lease(\"k\") = \"1\"\n\nput \"sp ace\" \"x\\ny\"\n",
		"c(\"k\") < \"9\"\n\n\n",
		"\n\nget --rev=5 k\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		spec, err := parseTxn(strings.NewReader(in))
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an empty error message")
			}
			return
		}
		for _, c := range spec.compares {
			_ = c.cmp().Err()
		}
		for _, rs := range [][]requestSpec{spec.success, spec.failure} {
			for _, r := range rs {
				_ = r.op()
			}
		}
	})
}

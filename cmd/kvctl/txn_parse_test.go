package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseCompare(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    compareSpec
		wantErr string
	}{
		{"value", `value("k") = "v"`, compareSpec{target: "value", key: "k", op: "=", value: "v"}, ""},
		{"val short", `val("k") != "v"`, compareSpec{target: "value", key: "k", op: "!=", value: "v"}, ""},
		{"double equal", `val("k") == "v"`, compareSpec{target: "value", key: "k", op: "=", value: "v"}, ""},
		{"value with spaces and escapes", `val("a key") = "tab\there \"q\""`, compareSpec{target: "value", key: "a key", op: "=", value: "tab\there \"q\""}, ""},
		{"bare value", `val("k") = v1`, compareSpec{target: "value", key: "k", op: "=", value: "v1"}, ""},
		{"empty value", `val("k") = ""`, compareSpec{target: "value", key: "k", op: "="}, ""},
		{"no spaces", `val("k")="v"`, compareSpec{target: "value", key: "k", op: "=", value: "v"}, ""},
		{"version quoted", `ver("k") > "3"`, compareSpec{target: "version", key: "k", op: ">", num: 3}, ""},
		{"version bare", `version("k") < 3`, compareSpec{target: "version", key: "k", op: "<", num: 3}, ""},
		{"create", `create("k") = "0"`, compareSpec{target: "create", key: "k", op: "=", num: 0}, ""},
		{"create short", `c("k") = 5`, compareSpec{target: "create", key: "k", op: "=", num: 5}, ""},
		{"mod", `mod("k") > 10`, compareSpec{target: "mod", key: "k", op: ">", num: 10}, ""},
		{"mod short", `m("k") != 10`, compareSpec{target: "mod", key: "k", op: "!=", num: 10}, ""},
		{"lease", `lease("k") = 0`, compareSpec{target: "lease", key: "k", op: "=", num: 0}, ""},
		{"negative number", `mod("k") > -1`, compareSpec{target: "mod", key: "k", op: ">", num: -1}, ""},
		{"binary key", `val("\x00\xff") = "v"`, compareSpec{target: "value", key: "\x00\xff", op: "=", value: "v"}, ""},

		{"no parenthesis", `value "k" = "v"`, compareSpec{}, "want <target>"},
		{"unknown target", `size("k") = 1`, compareSpec{}, `unknown target "size"`},
		{"unquoted key", `val(k) = "v"`, compareSpec{}, "the key must be a double-quoted string"},
		{"unterminated key", `val("k) = "v"`, compareSpec{}, `want ")" after the key`},
		{"missing close", `val("k" = "v"`, compareSpec{}, `want ")" after the key`},
		{"unknown operator", `ver("k") >= 1`, compareSpec{}, `unknown operator ">="`},
		{"missing operator", `ver("k") 1`, compareSpec{}, "missing operator"},
		{"missing value", `ver("k") =`, compareSpec{}, "missing value"},
		{"version not a number", `ver("k") = "x"`, compareSpec{}, `version needs an integer, got "x"`},
		{"trailing text", `val("k") = "v" extra`, compareSpec{}, `unexpected "extra"`},
		{"unquoted value with spaces", `val("k") = a b`, compareSpec{}, "quote values with spaces"},
		{"bad escape", `val("k") = "\q"`, compareSpec{}, "bad quoted value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCompare(tt.line)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseCompare(%q) error = %v, want one containing %q", tt.line, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseCompare(%q): %v", tt.line, err)
			}
			if got != tt.want {
				t.Errorf("parseCompare(%q) = %+v, want %+v", tt.line, got, tt.want)
			}
			if err := got.cmp().Err(); err != nil {
				t.Errorf("client compare: %v", err)
			}
		})
	}
}

func TestSplitArgs(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    []string
		wantErr string
	}{
		{"plain", "put k v", []string{"put", "k", "v"}, ""},
		{"extra blanks", "  put\tk   v ", []string{"put", "k", "v"}, ""},
		{"double quotes", `put "a key" "a value"`, []string{"put", "a key", "a value"}, ""},
		{"escapes", `put k "line1\nline2\x00"`, []string{"put", "k", "line1\nline2\x00"}, ""},
		{"empty quoted", `put k ""`, []string{"put", "k", ""}, ""},
		{"single quotes are literal", `put k 'a\nb "c"'`, []string{"put", "k", `a\nb "c"`}, ""},
		{"adjacent parts join", `put k pre"fix "'x'`, []string{"put", "k", "prefix x"}, ""},
		{"unterminated double", `put k "abc`, nil, "column 7: unterminated string"},
		{"unterminated single", `put k 'abc`, nil, "unterminated single-quoted string"},
		{"empty", "   ", nil, "empty request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := splitArgs(tt.line)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("splitArgs(%q) error = %v, want one containing %q", tt.line, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("splitArgs(%q) = %q, want %q", tt.line, got, tt.want)
			}
		})
	}
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    requestSpec
		wantErr string
	}{
		{"put", "put k v", requestSpec{put: &putRequest{key: "k", value: "v"}}, ""},
		{"put prev kv", `put --prev-kv "k" "v w"`, requestSpec{put: &putRequest{key: "k", value: "v w", prevKV: true}}, ""},
		{"put value after dashes", "put k -- -1", requestSpec{put: &putRequest{key: "k", value: "-1"}}, ""},
		{"get", "get k", requestSpec{get: &getRequest{key: "k"}}, ""},
		{"get range", "get a c", requestSpec{get: &getRequest{key: "a", end: "c"}}, ""},
		{"get flags", "get k --prefix --limit 2 --rev=4 --keys-only", requestSpec{get: &getRequest{key: "k", prefix: true, limit: 2, rev: 4, keysOnly: true}}, ""},
		{"get count only", "get k --from-key --count-only", requestSpec{get: &getRequest{key: "k", fromKey: true, countOnly: true}}, ""},
		{"del", "del k", requestSpec{del: &delRequest{key: "k"}}, ""},
		{"del prefix prev kv", "del k --prefix --prev-kv", requestSpec{del: &delRequest{key: "k", prefix: true, prevKV: true}}, ""},
		{"del range", "del a z", requestSpec{del: &delRequest{key: "a", end: "z"}}, ""},

		{"unknown verb", "watch k", requestSpec{}, `unknown request "watch": want put, get or del`},
		{"put without value", "put k", requestSpec{}, "put needs a key and a value"},
		{"put with get flag", "put k v --prefix", requestSpec{}, "put: unknown flag: --prefix"},
		{"get without key", "get", requestSpec{}, "get needs a key"},
		{"get prefix and end", "get a b --prefix", requestSpec{}, "a range end cannot be used with --prefix"},
		{"get bad limit", "get a --limit x", requestSpec{}, `invalid argument "x"`},
		{"get negative rev", "get a --rev -3", requestSpec{}, "invalid --rev -3"},
		{"del too many", "del a b c", requestSpec{}, "got 3 arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseRequest(tt.line)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseRequest(%q) error = %v, want one containing %q", tt.line, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseRequest(%q): %v", tt.line, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseRequest(%q) = %+v, want %+v", tt.line, got, tt.want)
			}
		})
	}
}

func TestParseTxn(t *testing.T) {
	cmpK := compareSpec{target: "value", key: "k", op: "=", value: "v"}
	putK := requestSpec{put: &putRequest{key: "k", value: "w"}}
	getK := requestSpec{get: &getRequest{key: "k"}}
	tests := []struct {
		name    string
		input   string
		want    *txnSpec
		wantErr string
	}{
		{"full", "val(\"k\") = \"v\"\n\nput k w\n\nget k\n",
			&txnSpec{compares: []compareSpec{cmpK}, success: []requestSpec{putK}, failure: []requestSpec{getK}}, ""},
		{"no trailing newline", "val(\"k\") = \"v\"\n\nput k w\n\nget k",
			&txnSpec{compares: []compareSpec{cmpK}, success: []requestSpec{putK}, failure: []requestSpec{getK}}, ""},
		{"crlf and indentation", "  val(\"k\") = \"v\"\r\n\r\n\tput k w\r\n",
			&txnSpec{compares: []compareSpec{cmpK}, success: []requestSpec{putK}}, ""},
		{"no compares", "\nput k w\n", &txnSpec{success: []requestSpec{putK}}, ""},
		{"only failure", "\n\nget k\n", &txnSpec{failure: []requestSpec{getK}}, ""},
		{"compares only, no blank line", "val(\"k\") = \"v\"\n", &txnSpec{compares: []compareSpec{cmpK}}, ""},
		{"empty input", "", &txnSpec{}, ""},
		{"trailing blank lines", "\nput k w\n\n\n\n", &txnSpec{success: []requestSpec{putK}}, ""},
		{"several of each", "val(\"k\") = \"v\"\nval(\"k\") = \"v\"\n\nput k w\nget k\n\nget k\nput k w\n",
			&txnSpec{compares: []compareSpec{cmpK, cmpK}, success: []requestSpec{putK, getK}, failure: []requestSpec{getK, putK}}, ""},

		{"request among compares", "put k w\n", nil, "line 1: malformed compare"},
		{"bad compare on line 2", "val(\"k\") = \"v\"\nver(\"k\") ~ 1\n", nil, "line 2: malformed compare"},
		{"bad request", "\nput k w\nget\n", nil, "line 3: get needs a key"},
		{"compare among requests", "\nval(\"k\") = \"v\"\n", nil, `line 2: unknown request "val(k)"`},
		{"input after failure", "\n\nget k\n\nget k\n", nil, "line 5: unexpected input after the failure requests"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseTxn(strings.NewReader(tt.input))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseTxn error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseTxn = %+v, want %+v", got, tt.want)
			}
		})
	}
}

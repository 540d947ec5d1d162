package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/kvd-io/kvd/client"
)

// txnSpec is a transaction as etcdctl's txn reads it from stdin:
//
//	<compares, one per line>
//	<empty line>
//	<success requests, one per line>
//	<empty line>
//	<failure requests, one per line>
//
// The failure requests end at the end of input or at an empty line. End of
// input also ends the compares or the success requests early.
type txnSpec struct {
	compares []compareSpec
	success  []requestSpec
	failure  []requestSpec
}

// compareSpec is one compare line: target("key") op value.
type compareSpec struct {
	target string // value, version, create, mod or lease
	key    string
	op     string // =, !=, < or >
	value  string // for the value target
	num    int64  // for the other targets
}

// requestSpec is one request line; exactly one field is set.
type requestSpec struct {
	put *putRequest
	get *getRequest
	del *delRequest
}

// compareTargets maps the names a compare line may use to a target.
var compareTargets = map[string]string{
	"val": "value", "value": "value",
	"ver": "version", "version": "version",
	"c": "create", "create": "create",
	"m": "mod", "mod": "mod",
	"lease": "lease",
}

// parseTxn reads a transaction from r. Errors name the line they are on.
func parseTxn(r io.Reader) (*txnSpec, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	spec := &txnSpec{}
	section := 0 // 0: compares, 1: success, 2: failure, 3: done
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			section++
			continue
		}
		var err error
		switch section {
		case 0:
			var cmp compareSpec
			if cmp, err = parseCompare(line); err == nil {
				spec.compares = append(spec.compares, cmp)
			}
		case 1, 2:
			var req requestSpec
			if req, err = parseRequest(line); err == nil {
				if section == 1 {
					spec.success = append(spec.success, req)
				} else {
					spec.failure = append(spec.failure, req)
				}
			}
		default:
			err = errors.New("unexpected input after the failure requests")
		}
		if err != nil {
			return nil, fmt.Errorf("txn: line %d: %w", lineNo, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("txn: reading input: %w", err)
	}
	return spec, nil
}

// parseCompare parses `<target>("<key>") <op> <value>`. The key is a
// double-quoted string with Go escapes; the value is quoted or a bare word,
// and an integer for every target but value.
func parseCompare(line string) (compareSpec, error) {
	bad := func(format string, args ...any) (compareSpec, error) {
		return compareSpec{}, fmt.Errorf("malformed compare %q: %s", line, fmt.Sprintf(format, args...))
	}
	name, rest, ok := strings.Cut(line, "(")
	if !ok {
		return bad(`want <target>("<key>") <op> <value>`)
	}
	name = strings.TrimSpace(name)
	target, ok := compareTargets[name]
	if !ok {
		return bad("unknown target %q: want val, ver, create, mod or lease", name)
	}
	rest = strings.TrimLeft(rest, " \t")
	key, n, err := unquotePrefix(rest)
	if err != nil {
		return bad("the key must be a double-quoted string: %v", err)
	}
	rest = strings.TrimLeft(rest[n:], " \t")
	if !strings.HasPrefix(rest, ")") {
		return bad(`want ")" after the key`)
	}
	rest = strings.TrimLeft(rest[1:], " \t")
	opLen := strings.IndexFunc(rest, func(r rune) bool { return !strings.ContainsRune("=!<>", r) })
	if opLen < 0 {
		opLen = len(rest)
	}
	op := rest[:opLen]
	switch op {
	case "=", "==":
		op = "="
	case "!=", "<", ">":
	case "":
		return bad("missing operator: want =, !=, < or >")
	default:
		return bad("unknown operator %q: want =, !=, < or >", op)
	}
	rest = strings.TrimSpace(rest[opLen:])
	var value string
	switch {
	case rest == "":
		return bad("missing value")
	case rest[0] == '"':
		if value, n, err = unquotePrefix(rest); err != nil {
			return bad("bad quoted value: %v", err)
		}
		if strings.TrimSpace(rest[n:]) != "" {
			return bad("unexpected %q after the value", strings.TrimSpace(rest[n:]))
		}
	case strings.ContainsAny(rest, " \t"):
		return bad("unexpected %q after the value (quote values with spaces)", rest)
	default:
		value = rest
	}
	cmp := compareSpec{target: target, key: key, op: op}
	if target == "value" {
		cmp.value = value
		return cmp, nil
	}
	if cmp.num, err = strconv.ParseInt(value, 10, 64); err != nil {
		return bad("%s needs an integer, got %q", target, value)
	}
	return cmp, nil
}

// unquotePrefix unquotes the double-quoted Go string at the start of s and
// returns it with the number of bytes it took.
func unquotePrefix(s string) (string, int, error) {
	if !strings.HasPrefix(s, `"`) {
		return "", 0, errors.New("no opening quote")
	}
	q, err := strconv.QuotedPrefix(s)
	if err != nil {
		return "", 0, errors.New("unterminated string or bad escape")
	}
	u, err := strconv.Unquote(q)
	if err != nil {
		return "", 0, err
	}
	return u, len(q), nil
}

// parseRequest parses `put KEY VALUE`, `get KEY [END] [flags]` or
// `del KEY [END] [flags]`, with the flags of the matching command.
func parseRequest(line string) (requestSpec, error) {
	args, err := splitArgs(line)
	if err != nil {
		return requestSpec{}, err
	}
	verb, args := args[0], args[1:]
	fs := pflag.NewFlagSet(verb, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		spec    requestSpec
		setArgs func([]string) error
	)
	switch verb {
	case "put":
		spec.put = &putRequest{}
		spec.put.bindFlags(fs)
		setArgs = spec.put.setArgs
	case "get":
		spec.get = &getRequest{}
		spec.get.bindFlags(fs)
		setArgs = func(a []string) error {
			if err := spec.get.setArgs(a); err != nil {
				return err
			}
			return spec.get.validate()
		}
	case "del":
		spec.del = &delRequest{}
		spec.del.bindFlags(fs)
		setArgs = spec.del.setArgs
	default:
		return requestSpec{}, fmt.Errorf("unknown request %q: want put, get or del", verb)
	}
	if err := fs.Parse(args); err != nil {
		return requestSpec{}, fmt.Errorf("%s: %w", verb, err)
	}
	if err := setArgs(fs.Args()); err != nil {
		return requestSpec{}, err
	}
	return spec, nil
}

// splitArgs splits a request line into words at blanks. A double-quoted part
// is a Go string literal (escapes allowed); a single-quoted part is taken
// literally. Quoted parts may be empty and join adjacent text, as in a shell.
func splitArgs(s string) ([]string, error) {
	var (
		args []string
		cur  strings.Builder
		in   bool // inside a word
	)
	for i := 0; i < len(s); {
		switch c := s[i]; c {
		case ' ', '\t':
			if in {
				args = append(args, cur.String())
				cur.Reset()
				in = false
			}
			i++
		case '"':
			u, n, err := unquotePrefix(s[i:])
			if err != nil {
				return nil, fmt.Errorf("column %d: %w", i+1, err)
			}
			cur.WriteString(u)
			in = true
			i += n
		case '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("column %d: unterminated single-quoted string", i+1)
			}
			cur.WriteString(s[i+1 : i+1+j])
			in = true
			i += j + 2
		default:
			cur.WriteByte(c)
			in = true
			i++
		}
	}
	if in {
		args = append(args, cur.String())
	}
	if len(args) == 0 {
		return nil, errors.New("empty request")
	}
	return args, nil
}

// cmp returns the client compare of c.
func (c compareSpec) cmp() client.Cmp {
	switch c.target {
	case "value":
		return client.Compare(client.Value(c.key), c.op, c.value)
	case "version":
		return client.Compare(client.Version(c.key), c.op, c.num)
	case "create":
		return client.Compare(client.CreateRevision(c.key), c.op, c.num)
	case "mod":
		return client.Compare(client.ModRevision(c.key), c.op, c.num)
	default:
		return client.Compare(client.LeaseValue(c.key), c.op, c.num)
	}
}

// op returns the client op of r. Reads in a transaction are always
// linearizable.
func (r requestSpec) op() client.Op {
	switch {
	case r.put != nil:
		return r.put.op()
	case r.get != nil:
		return r.get.op(false)
	default:
		return r.del.op()
	}
}

// format returns how r's response is printed.
func (r requestSpec) format() getFormat {
	if r.get != nil {
		return getFormat{countOnly: r.get.countOnly}
	}
	return getFormat{}
}

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// A config file (--config FILE, or KVD_CONFIG) is a YAML mapping whose keys
// are kvd's flag names and whose values are what the flag would be given:
//
//	name: n1
//	data-dir: /var/lib/kvd
//	initial-cluster: [n1=10.0.0.1:7380, n2=10.0.0.2:7380, n3=10.0.0.3:7380]
//	snapshot-threshold: 8192
//	election-timeout: 1s
//
// Precedence is flag > environment > file > default: the file sets only the
// flags that neither the command line nor a KVD_* variable set. Values are
// read as the text they are written as (`name: no` is the name "no", not
// false) and parsed by the flag, so they mean exactly what they would on the
// command line. deploy/kvd.yaml is an example naming every flag.

// notSetting reports why a config file cannot set a flag: its own name, and
// --version, which is a command rather than a setting.
func notSetting(name string) (why string, ok bool) {
	switch name {
	case "config":
		return "a config file cannot name another config file", true
	case "version":
		return "--version is a command, not a setting", true
	}
	return "", false
}

// isListFlag reports whether a flag takes a comma-separated list, which a
// config file may also write as a YAML sequence.
func isListFlag(name string) bool { return name == "initial-cluster" || name == "join" }

// fileSetting is one key of a config file with the text of its value.
type fileSetting struct {
	name  string
	value string
	line  int
}

// applyConfigFile reads the config file at path (none when path is empty),
// checks every setting in it, and sets each flag that the command line and
// the environment left unset. Errors name the file, the line, the key and,
// for a bad value, the value.
func applyConfigFile(fs *flag.FlagSet, path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	settings, err := readConfig(f, fs)
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, s := range settings {
		// Check every value, even one a flag overrides: a bad file should
		// fail now, not on the day the override goes away.
		if err := checkValue(fs.Lookup(s.name), s.value); err != nil {
			return fmt.Errorf("config file %s: line %d: %s: invalid value %q: %w", path, s.line, s.name, s.value, err)
		}
		if given[s.name] {
			continue
		}
		if err := fs.Set(s.name, s.value); err != nil {
			return fmt.Errorf("config file %s: line %d: %s: invalid value %q: %w", path, s.line, s.name, s.value, err)
		}
	}
	return nil
}

// readConfig parses a config file into its settings, in file order. It checks
// the file's shape (one mapping of known flag names to values) but not the
// values themselves.
func readConfig(r io.Reader, fs *flag.FlagSet) ([]fileSetting, error) {
	dec := yaml.NewDecoder(r)
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil, nil // an empty file sets nothing
	} else if err != nil {
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("want one YAML document, found more")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if isNull(root) {
		return nil, nil // a file of comments only
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: want a mapping of flag names to values", root.Line)
	}
	var settings []fileSetting
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], resolve(root.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("line %d: want a flag name as key", k.Line)
		}
		name := k.Value
		if line, dup := seen[name]; dup {
			return nil, fmt.Errorf("line %d: %s is set twice (first on line %d)", k.Line, name, line)
		}
		seen[name] = k.Line
		if why, ok := notSetting(name); ok {
			return nil, fmt.Errorf("line %d: %s: %s", k.Line, name, why)
		}
		if fs.Lookup(name) == nil {
			return nil, fmt.Errorf("line %d: unknown key %q%s", k.Line, name, suggest(fs, name))
		}
		value, err := settingValue(name, v)
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", v.Line, name, err)
		}
		settings = append(settings, fileSetting{name: name, value: value, line: k.Line})
	}
	return settings, nil
}

// settingValue returns the flag text of a value node: a scalar's text as
// written, or, for list flags, a sequence of scalars joined with commas.
func settingValue(name string, v *yaml.Node) (string, error) {
	switch {
	case isNull(v):
		return "", errors.New(`no value (write "" for an empty string)`)
	case v.Kind == yaml.ScalarNode:
		return v.Value, nil
	case v.Kind == yaml.SequenceNode && isListFlag(name):
		items := make([]string, 0, len(v.Content))
		for _, item := range v.Content {
			item = resolve(item)
			if item.Kind != yaml.ScalarNode || isNull(item) {
				return "", fmt.Errorf("line %d: want a list of strings", item.Line)
			}
			items = append(items, item.Value)
		}
		return strings.Join(items, ","), nil
	case v.Kind == yaml.SequenceNode:
		return "", errors.New("want a single value, not a list")
	}
	return "", errors.New("want a single value, not a mapping")
}

// checkValue reports whether the flag would accept text, without changing
// the flag: it sets a fresh value of the flag's type. kvd's flags are all the
// standard library's, whose values are pointers to a basic type; any other
// kind is left to fs.Set.
func checkValue(f *flag.Flag, text string) error {
	t := reflect.TypeOf(f.Value)
	if t.Kind() != reflect.Pointer {
		return nil
	}
	v, ok := reflect.New(t.Elem()).Interface().(flag.Value)
	if !ok {
		return nil
	}
	return v.Set(text)
}

func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// suggest names the flag a mistyped key probably meant, if any.
func suggest(fs *flag.FlagSet, key string) string {
	guess := strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(key, "--"), "KVD_"))
	guess = strings.ReplaceAll(guess, "_", "-")
	if guess != key && fs.Lookup(guess) != nil {
		if _, bad := notSetting(guess); !bad {
			return fmt.Sprintf(" (did you mean %q?)", guess)
		}
	}
	return " (keys are kvd's flag names, such as data-dir)"
}

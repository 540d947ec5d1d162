package etcdapi

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name, version, err string
	}{
		{"default", "", ""},
		{"release", "3.5.13", ""},
		{"pre-release", "3.7.0-alpha.0", ""},
		{"two parts", "3.6", "want major.minor.patch"},
		{"not a number", "3.x.0", `"x" is not a version number`},
		{"leading zero", "3.06.0", `"06" is not a version number`},
		{"negative", "3.-1.0", "want major.minor.patch"},
		{"plus sign", "3.+1.0", `"+1" is not a version number`},
		{"another major", "4.0.0", "must be 3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Config{EtcdVersion: c.version}.Validate()
			if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
				t.Fatalf("Validate(%q) = %v, want an error with %q", c.version, err, c.err)
			}
		})
	}
	if v := (Config{}).etcdVersion(); v != DefaultEtcdVersion {
		t.Errorf("default version %q, want %q", v, DefaultEtcdVersion)
	}
	if v := storageVersion("3.5.21"); v != "3.5.0" {
		t.Errorf("storage version of 3.5.21: %q, want 3.5.0", v)
	}
}

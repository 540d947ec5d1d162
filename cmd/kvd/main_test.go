package main

import (
	"io"
	"testing"
	"time"

	"github.com/kvd-io/kvd/server"
)

func TestFlagsEnvironmentAndDefaults(t *testing.T) {
	cases := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, o *options)
	}{
		{"defaults start a single local member", nil, nil, func(t *testing.T, o *options) {
			d := server.DefaultConfig()
			if o.cfg.ClientAddr != "127.0.0.1:7379" || o.cfg.RaftAddr != "127.0.0.1:7380" || o.cfg.DataDir != "kvd-data" ||
				o.cfg.MaxRequestBytes != d.MaxRequestBytes || len(o.cfg.InitialCluster) != 0 || o.cfg.Name == "" {
				t.Fatalf("unexpected defaults: %+v", o.cfg)
			}
			if err := o.cfg.Validate(); err != nil {
				t.Fatalf("defaults do not validate: %v", err)
			}
		}},
		{"environment fills flags", nil, map[string]string{"KVD_NAME": "n9", "KVD_CLIENT_ADDR": "127.0.0.1:9999", "KVD_MAX_REQUEST_BYTES": "1024"}, func(t *testing.T, o *options) {
			if o.cfg.Name != "n9" || o.cfg.ClientAddr != "127.0.0.1:9999" || o.cfg.MaxRequestBytes != 1024 {
				t.Fatalf("environment not applied: %+v", o.cfg)
			}
		}},
		{"flag beats environment", []string{"--name", "fromflag"}, map[string]string{"KVD_NAME": "fromenv"}, func(t *testing.T, o *options) {
			if o.cfg.Name != "fromflag" {
				t.Fatalf("name = %q, want the flag's", o.cfg.Name)
			}
		}},
		{"initial cluster parsed", []string{"--name", "a", "--initial-cluster", "a=127.0.0.1:1,b=127.0.0.1:2"}, nil, func(t *testing.T, o *options) {
			want := []server.Peer{{Name: "a", RaftAddr: "127.0.0.1:1"}, {Name: "b", RaftAddr: "127.0.0.1:2"}}
			if len(o.cfg.InitialCluster) != 2 || o.cfg.InitialCluster[0] != want[0] || o.cfg.InitialCluster[1] != want[1] {
				t.Fatalf("initial cluster = %+v", o.cfg.InitialCluster)
			}
		}},
		{"durations from environment", nil, map[string]string{"KVD_REQUEST_TIMEOUT": "7s"}, func(t *testing.T, o *options) {
			if o.cfg.RequestTimeout != 7*time.Second {
				t.Fatalf("request timeout = %s", o.cfg.RequestTimeout)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseFlags(tc.args, io.Discard, func(k string) string { return tc.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, o)
		})
	}
}

func TestBadInputIsRefused(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"unknown flag", []string{"--nope"}, nil},
		{"stray argument", []string{"extra"}, nil},
		{"bad initial cluster", []string{"--initial-cluster", "a"}, nil},
		{"bad initial cluster address", []string{"--initial-cluster", "a=nohost"}, nil},
		{"bad environment value", nil, map[string]string{"KVD_MAX_REQUEST_BYTES": "lots"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseFlags(tc.args, io.Discard, func(k string) string { return tc.env[k] }); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	// Flags that parse but do not make a valid member are refused by Validate.
	for _, args := range [][]string{
		{"--name", "a", "--initial-cluster", "b=127.0.0.1:1"},
		{"--client-addr", "nope"},
		{"--max-request-bytes", "0"},
		{"--advertise-client-addr", "0.0.0.0:7379"},
	} {
		o, err := parseFlags(args, io.Discard, func(string) string { return "" })
		if err != nil {
			continue
		}
		if err := o.cfg.Validate(); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
	if _, err := newLogger(io.Discard, "loud", "text"); err == nil {
		t.Error("bad log level accepted")
	}
	if _, err := newLogger(io.Discard, "info", "xml"); err == nil {
		t.Error("bad log format accepted")
	}
}

func TestUnsafeLocalReadsRefusedInReleaseBuild(t *testing.T) {
	o, err := parseFlags([]string{"--unsafe-local-reads"}, io.Discard, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if err := o.cfg.Validate(); err == nil {
		t.Fatal("a release build accepted --unsafe-local-reads")
	}
}

func TestUnsafeEarlyLeaseExpiryRefusedInReleaseBuild(t *testing.T) {
	o, err := parseFlags([]string{"--unsafe-early-lease-expiry"}, io.Discard, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if err := o.cfg.Validate(); err == nil {
		t.Fatal("a release build accepted --unsafe-early-lease-expiry")
	}
}

package bench

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		change  func(c *Config)
		wantErr string // empty: valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"duration only", func(c *Config) { c.Total, c.Duration = 0, time.Second }, ""},
		{"many clients few conns", func(c *Config) { c.Clients, c.Conns = 1000, 100 }, ""},
		{"single key get", func(c *Config) { c.Op, c.Key = OpGet, "k" }, ""},
		{"key space fits one byte", func(c *Config) { c.KeySize, c.KeySpace = 1, 64 }, ""},
		{"unknown op", func(c *Config) { c.Op = "scan" }, `unknown op "scan"`},
		{"no clients", func(c *Config) { c.Clients = 0 }, "clients 0: must be at least 1"},
		{"no conns", func(c *Config) { c.Conns = 0 }, "conns 0: must be at least 1"},
		{"conns over clients", func(c *Config) { c.Clients, c.Conns = 2, 3 }, "conns 3 is more than clients 2"},
		{"negative total", func(c *Config) { c.Total = -1 }, "total -1"},
		{"negative duration", func(c *Config) { c.Duration = -time.Second }, "duration -1s"},
		{"no end", func(c *Config) { c.Total, c.Duration = 0, 0 }, "never end"},
		{"negative rate", func(c *Config) { c.Rate = -5 }, "rate -5"},
		{"zero key size", func(c *Config) { c.KeySize = 0 }, "key size 0"},
		{"negative value size", func(c *Config) { c.ValSize = -1 }, "value size -1"},
		{"zero key space", func(c *Config) { c.KeySpace = 0 }, "key space 0"},
		{"key space too big", func(c *Config) { c.KeySize, c.KeySpace = 1, 65 }, "key space 65 does not fit in keys of 1 bytes (at most 64 keys)"},
		{"read ratio", func(c *Config) { c.ReadRatio = 1.5 }, "read ratio 1.5"},
		{"txn ops over key space", func(c *Config) { c.Op, c.TxnOps = OpTxn, 3 }, "txn ops 3 is more than key space 1"},
		{"key for txn", func(c *Config) { c.Op, c.Key = OpTxn, "k" }, `a single key ("k") is only for get and put`},
		{"key and key space", func(c *Config) { c.Op, c.Key, c.KeySpace = OpGet, "k", 10 }, "cannot be used together"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig(OpPut)
			tt.change(&c)
			before := c
			err := c.Validate()
			if c != before {
				t.Fatal("Validate changed the config")
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			case err != nil && !errors.Is(err, ErrInvalidConfig):
				t.Fatalf("Validate() = %v, does not wrap ErrInvalidConfig", err)
			}
		})
	}
}

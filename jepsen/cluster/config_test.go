package cluster

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.KvdBin, ok.Dir = "/bin/kvd", "/tmp/run"
	if err := ok.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	tests := []struct {
		name   string
		change func(c *Config)
		want   string
	}{
		{"no nodes", func(c *Config) { c.Nodes = 0 }, "nodes"},
		{"no binary", func(c *Config) { c.KvdBin = "" }, "binary"},
		{"public subnet", func(c *Config) { c.Subnet = "8.8.8" }, "private"},
		{"bad subnet", func(c *Config) { c.Subnet = "10.213" }, "private"},
		{"long prefix", func(c *Config) { c.Prefix = "averyverylongprefix" }, "interface names"},
		{"same ports", func(c *Config) { c.RaftPort = c.ClientPort }, "ports"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.change(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one about %q", err, tt.want)
			}
		})
	}
}

func TestNames(t *testing.T) {
	c := DefaultConfig()
	if c.IP(1) != "10.213.0.11" || c.Namespace(3) != "kvdj-n3" || c.veth(2) != "kvdjv2" || NodeName(4) != "n4" || c.bridgeIP() != "10.213.0.1" {
		t.Fatalf("names: %s %s %s %s", c.IP(1), c.Namespace(3), c.veth(2), NodeName(4))
	}
}

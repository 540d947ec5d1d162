package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kvd-io/kvd/internal/certgen"
	"github.com/kvd-io/kvd/internal/memberid"
)

type certsOptions struct {
	g          *globalOptions
	dir        string
	members    []string
	hosts      []string
	clientName string
	expiry     time.Duration
	now        func() time.Time
}

func newCertsCmd(g *globalOptions) *cobra.Command {
	o := &certsOptions{g: g, now: time.Now}
	cmd := &cobra.Command{
		Use:   "certs --dir DIR --members n1,n2,n3",
		Short: "Makes a CA and the TLS certificates of a test or development cluster",
		Long: `Makes the certificates a kvd cluster needs for TLS, with Go's crypto (no
openssl), into DIR:

  ca.crt, ca.key                 the CA (reused when DIR already has one)
  NAME.crt, NAME.key             each member's client-port certificate
  NAME-peer.crt, NAME-peer.key   each member's peer (raft) certificate
  client.crt, client.key         a client certificate for kvctl and the SDK

Member certificates are valid for the member's name, localhost, 127.0.0.1,
::1 and every --hosts entry, where {name} stands for the member's name
(--hosts '{name}.kvd.default.svc,kvd.example.com'); they can serve and
authenticate as clients, as members need. Files are replaced atomically, so
running it again over a running cluster's files is a certificate rotation.

For production, use your own CA or cert-manager (see docs/operations.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.dir, "dir", "", "directory to write the files into (created if missing)")
	fs.StringSliceVar(&o.members, "members", nil, "member names, comma-separated")
	fs.StringSliceVar(&o.hosts, "hosts", nil, "more DNS names or IPs for every member certificate; {name} is the member's name")
	fs.StringVar(&o.clientName, "client-name", "client", "common name of the client certificate")
	fs.DurationVar(&o.expiry, "expiry", 365*24*time.Hour, "validity of the certificates (the CA's, when made, is ten times it)")
	return cmd
}

func (o *certsOptions) validate() error {
	if o.dir == "" {
		return errors.New("certs: --dir is required")
	}
	if len(o.members) == 0 {
		return errors.New("certs: --members is required (n1,n2,n3)")
	}
	seen := map[string]bool{}
	for _, m := range o.members {
		if err := memberid.CheckName(m); err != nil {
			return fmt.Errorf("certs: --members: %w", err)
		}
		if seen[m] {
			return fmt.Errorf("certs: --members names %q twice", m)
		}
		if m == "ca" || m == "client" {
			return fmt.Errorf("certs: a member named %q would overwrite %s.crt", m, m)
		}
		seen[m] = true
	}
	if o.expiry <= 0 {
		return fmt.Errorf("certs: --expiry %s must be positive", o.expiry)
	}
	if o.clientName == "" {
		return errors.New("certs: --client-name is empty")
	}
	return nil
}

// Run writes the CA (unless DIR has one) and every certificate.
func (o *certsOptions) Run(context.Context) error {
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	now := o.now()
	notBefore := now.Add(-time.Hour) // tolerate clocks a little behind
	caCert, caKey := filepath.Join(o.dir, "ca.crt"), filepath.Join(o.dir, "ca.key")
	var ca *certgen.CA
	if _, err := os.Stat(caKey); err == nil {
		if ca, err = certgen.LoadCA(caCert, caKey); err != nil {
			return fmt.Errorf("certs: existing CA: %w", err)
		}
		fmt.Fprintf(o.g.out, "reused %s\n", caCert)
	} else {
		if ca, err = certgen.NewCA("kvd test CA", notBefore, now.Add(10*o.expiry)); err != nil {
			return err
		}
		if err := ca.Write(o.dir); err != nil {
			return err
		}
		fmt.Fprintf(o.g.out, "wrote %s\n", caCert)
	}
	notAfter := now.Add(o.expiry)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	issue := func(base string, req certgen.Request) error {
		req.NotBefore, req.NotAfter = notBefore, notAfter
		cert, key, err := ca.Issue(req)
		if err != nil {
			return err
		}
		certFile, keyFile := filepath.Join(o.dir, base+".crt"), filepath.Join(o.dir, base+".key")
		// The key first: a member reloading between the two writes sees a
		// pair that does not match and keeps its old one until the next look.
		if err := certgen.WriteFile(keyFile, key, 0o600); err != nil {
			return err
		}
		if err := certgen.WriteFile(certFile, cert, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(o.g.out, "wrote %s\n", certFile)
		return nil
	}
	for _, m := range o.members {
		hosts := []string{m, "localhost", "127.0.0.1", "::1"}
		for _, h := range o.hosts {
			if h = strings.TrimSpace(strings.ReplaceAll(h, "{name}", m)); h != "" {
				hosts = append(hosts, h)
			}
		}
		for _, base := range []string{m, m + "-peer"} {
			if err := issue(base, certgen.Request{CommonName: m, Hosts: hosts, Usage: certgen.Server | certgen.Client}); err != nil {
				return err
			}
		}
	}
	return issue("client", certgen.Request{CommonName: o.clientName, Usage: certgen.Client})
}

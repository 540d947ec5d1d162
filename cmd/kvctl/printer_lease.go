package main

import (
	"fmt"
	"strings"

	"github.com/kvd-io/kvd/client"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// The lease, lock and elect results in each format. Lease ids print in hex,
// as etcdctl prints them, except in JSON, where ids are numbers.

// LeaseGrant writes etcdctl's "lease ID granted with TTL(10s)".
func (p *simplePrinter) LeaseGrant(resp *client.LeaseGrantResponse) error {
	_, err := fmt.Fprintf(p.out, "lease %s granted with TTL(%ds)\n", leaseID(resp.GetId()), resp.GetTtl())
	return err
}

// LeaseRevoke writes etcdctl's "lease ID revoked".
func (p *simplePrinter) LeaseRevoke(id client.LeaseID, _ *client.LeaseRevokeResponse) error {
	_, err := fmt.Fprintf(p.out, "lease %s revoked\n", leaseID(id))
	return err
}

// LeaseKeepAlive writes etcdctl's "lease ID keepalived with TTL(10)", or
// "lease ID expired or revoked." when the lease is gone.
func (p *simplePrinter) LeaseKeepAlive(id client.LeaseID, resp *client.LeaseKeepAliveResponse) error {
	if resp == nil {
		_, err := fmt.Fprintf(p.out, "lease %s expired or revoked.\n", leaseID(id))
		return err
	}
	_, err := fmt.Fprintf(p.out, "lease %s keepalived with TTL(%d)\n", leaseID(resp.GetId()), resp.GetTtl())
	return err
}

// LeaseTimeToLive writes etcdctl's "lease ID granted with TTL(500s),
// remaining(485s)", with ", attached keys([k1 k2])" for --keys, or "lease ID
// already expired".
func (p *simplePrinter) LeaseTimeToLive(resp *client.LeaseTimeToLiveResponse, keys bool) error {
	if resp.GetTtl() < 0 {
		_, err := fmt.Fprintf(p.out, "lease %s already expired\n", leaseID(resp.GetId()))
		return err
	}
	line := fmt.Sprintf("lease %s granted with TTL(%ds), remaining(%ds)", leaseID(resp.GetId()), resp.GetGrantedTtl(), resp.GetTtl())
	if keys {
		ks := make([]string, 0, len(resp.GetKeys()))
		for _, k := range resp.GetKeys() {
			ks = append(ks, string(k))
		}
		line += fmt.Sprintf(", attached keys([%s])", strings.Join(ks, " "))
	}
	_, err := fmt.Fprintln(p.out, line)
	return err
}

// LeaseList writes etcdctl's "found N leases" and an id per line.
func (p *simplePrinter) LeaseList(resp *client.LeaseLeasesResponse) error {
	w := &errWriter{w: p.out}
	w.printf("found %d leases\n", len(resp.GetLeases()))
	for _, l := range resp.GetLeases() {
		w.println(leaseID(l.GetId()))
	}
	return w.err
}

// Lock writes the lock's key, as etcdctl does; the fencing token is in the
// JSON format and in the environment of lock's command.
func (p *simplePrinter) Lock(resp *client.LockResponse) error {
	_, err := fmt.Fprintf(p.out, "%s\n", resp.GetKey())
	return err
}

// Leader writes the leader's key line and proposal line, as etcdctl's
// elect does.
func (p *simplePrinter) Leader(_ *kvv1.ResponseHeader, kv *kvv1.KeyValue) error {
	w := &errWriter{w: p.out}
	printKV(w, false, kv)
	return w.err
}

// LeaseTimeToLive draws one row: ID, TTL, GRANTED TTL and, with --keys,
// KEYS.
func (p *tablePrinter) LeaseTimeToLive(resp *client.LeaseTimeToLiveResponse, keys bool) error {
	header := []string{"ID", "TTL", "GRANTED TTL"}
	row := []string{leaseID(resp.GetId()), fmt.Sprint(resp.GetTtl()), fmt.Sprint(resp.GetGrantedTtl())}
	if keys {
		ks := make([]string, 0, len(resp.GetKeys()))
		for _, k := range resp.GetKeys() {
			ks = append(ks, printableCell(string(k)))
		}
		header, row = append(header, "KEYS"), append(row, strings.Join(ks, ", "))
	}
	return writeTable(p.out, header, [][]string{row})
}

// LeaseList draws a row per lease.
func (p *tablePrinter) LeaseList(resp *client.LeaseLeasesResponse) error {
	rows := make([][]string, 0, len(resp.GetLeases()))
	for _, l := range resp.GetLeases() {
		rows = append(rows, []string{leaseID(l.GetId())})
	}
	return writeTable(p.out, []string{"ID"}, rows)
}

type jsonLease struct {
	Header jsonHeader `json:"header"`
	ID     int64      `json:"id"`
	TTL    int64      `json:"ttl"`
}

type jsonLeaseTTL struct {
	Header     jsonHeader `json:"header"`
	ID         int64      `json:"id"`
	TTL        int64      `json:"ttl"`
	GrantedTTL int64      `json:"granted_ttl"`
	Keys       [][]byte   `json:"keys,omitempty"`
}

func (p *jsonPrinter) LeaseGrant(resp *client.LeaseGrantResponse) error {
	return p.write(jsonLease{Header: toJSONHeader(resp.GetHeader()), ID: resp.GetId(), TTL: resp.GetTtl()})
}

func (p *jsonPrinter) LeaseRevoke(id client.LeaseID, resp *client.LeaseRevokeResponse) error {
	return p.write(struct {
		Header jsonHeader `json:"header"`
		ID     int64      `json:"id"`
	}{toJSONHeader(resp.GetHeader()), id})
}

// LeaseKeepAlive writes ttl 0 when the lease is gone.
func (p *jsonPrinter) LeaseKeepAlive(id client.LeaseID, resp *client.LeaseKeepAliveResponse) error {
	if resp == nil {
		return p.write(jsonLease{ID: id})
	}
	return p.write(jsonLease{Header: toJSONHeader(resp.GetHeader()), ID: resp.GetId(), TTL: resp.GetTtl()})
}

// LeaseTimeToLive writes ttl -1 when the lease does not exist.
func (p *jsonPrinter) LeaseTimeToLive(resp *client.LeaseTimeToLiveResponse, _ bool) error {
	return p.write(jsonLeaseTTL{Header: toJSONHeader(resp.GetHeader()), ID: resp.GetId(), TTL: resp.GetTtl(),
		GrantedTTL: resp.GetGrantedTtl(), Keys: resp.GetKeys()})
}

func (p *jsonPrinter) LeaseList(resp *client.LeaseLeasesResponse) error {
	out := struct {
		Header jsonHeader `json:"header"`
		Leases []int64    `json:"leases"`
	}{Header: toJSONHeader(resp.GetHeader()), Leases: []int64{}}
	for _, l := range resp.GetLeases() {
		out.Leases = append(out.Leases, l.GetId())
	}
	return p.write(out)
}

func (p *jsonPrinter) Lock(resp *client.LockResponse) error {
	return p.write(struct {
		Header         jsonHeader `json:"header"`
		Key            []byte     `json:"key"`
		CreateRevision int64      `json:"create_revision"`
	}{toJSONHeader(resp.GetHeader()), resp.GetKey(), resp.GetCreateRevision()})
}

func (p *jsonPrinter) Leader(hdr *kvv1.ResponseHeader, kv *kvv1.KeyValue) error {
	return p.write(struct {
		Header jsonHeader `json:"header"`
		KV     jsonKV     `json:"kv"`
	}{toJSONHeader(hdr), toJSONKV(kv)})
}

package client

import (
	"context"
	"errors"
)

// Txn builds an atomic if/then/else over keys:
//
//	resp, err := c.Txn(ctx).
//		If(client.Compare(client.Value("k"), "=", "old")).
//		Then(client.OpPut("k", "new")).
//		Else(client.OpGet("k")).
//		Commit()
//
// Call If, Then and Else at most once each, in that order; a call out of
// order is not a panic but an error that Commit returns. A Txn is not safe for
// concurrent use.
type Txn interface {
	// If adds the compares that must all hold for the Then operations to run.
	If(cmps ...Cmp) Txn

	// Then sets the operations to run when every compare holds.
	Then(ops ...Op) Txn

	// Else sets the operations to run when some compare does not hold.
	Else(ops ...Op) Txn

	// Commit sends the transaction and returns its result. A transaction
	// whose operations are all reads is retried like a read, any other like
	// a write. A compare that does not hold is not an error: it is a
	// response with Succeeded false.
	Commit() (*TxnResponse, error)
}

type txn struct {
	c   *Client
	ctx context.Context

	cmps    []Cmp
	thenOps []Op
	elseOps []Op

	cif, cthen, celse bool
	err               error
}

// Txn starts a transaction that Commit sends with ctx. See KV.Txn.
func (c *Client) Txn(ctx context.Context) Txn {
	return &txn{c: c, ctx: ctx}
}

func (t *txn) fail(msg string) {
	if t.err == nil {
		t.err = errors.New("client: " + msg)
	}
}

func (t *txn) If(cmps ...Cmp) Txn {
	switch {
	case t.cif:
		t.fail("txn: If called twice")
	case t.cthen || t.celse:
		t.fail("txn: If called after Then or Else")
	}
	t.cif = true
	t.cmps = append(t.cmps, cmps...)
	return t
}

func (t *txn) Then(ops ...Op) Txn {
	switch {
	case t.cthen:
		t.fail("txn: Then called twice")
	case t.celse:
		t.fail("txn: Then called after Else")
	}
	t.cthen = true
	t.thenOps = append(t.thenOps, ops...)
	return t
}

func (t *txn) Else(ops ...Op) Txn {
	if t.celse {
		t.fail("txn: Else called twice")
	}
	t.celse = true
	t.elseOps = append(t.elseOps, ops...)
	return t
}

func (t *txn) Commit() (*TxnResponse, error) {
	if t.err != nil {
		return nil, t.err
	}
	r, err := t.c.Do(t.ctx, OpTxn(t.cmps, t.thenOps, t.elseOps))
	return r.txn, err
}

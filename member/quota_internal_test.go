package member

import (
	"errors"
	"testing"
	"time"
)

// The quota check reads the state file's size at most every
// quotaSizeMaxAge: a read commits the state machine's open write batch, so
// reading it for every write defeated the batching.
func TestQuotaSizeIsReadAtMostEveryMaxAge(t *testing.T) {
	clock := time.Unix(1000, 0)
	c := sizeCache{now: func() time.Time { return clock }}
	reads, size := 0, int64(100)
	var readErr error
	read := func() (int64, int64, error) {
		reads++
		return size, 0, readErr
	}
	check := func(wantSize int64, wantReads int) {
		t.Helper()
		got, err := c.get(read)
		if err != nil || got != wantSize || reads != wantReads {
			t.Fatalf("get: %d, %v after %d reads; want %d after %d", got, err, reads, wantSize, wantReads)
		}
	}
	check(100, 1) // the first call reads
	size = 200
	clock = clock.Add(quotaSizeMaxAge / 2)
	check(100, 1) // fresh enough
	clock = clock.Add(quotaSizeMaxAge / 2)
	check(200, 2) // as old as allowed: read again

	readErr = errors.New("closed")
	clock = clock.Add(quotaSizeMaxAge)
	if _, err := c.get(read); !errors.Is(err, readErr) {
		t.Fatalf("get when the read fails: %v", err)
	}
	readErr, size = nil, 300
	check(300, 4) // a failed read is not cached
}

// A write is let through by a cached size, but refused only by a fresh
// one: right after a defragmentation shrank the file and an operator
// disarmed the alarm, a size cached from before must not raise it again.
func TestQuotaRefusalReadsTheSizeAgain(t *testing.T) {
	clock := time.Unix(1000, 0)
	c := sizeCache{now: func() time.Time { return clock }}
	reads, size := 0, int64(5000)
	read := func() (int64, int64, error) {
		reads++
		return size, 0, nil
	}
	if got, fits, err := c.fits(read, 100, 4000); err != nil || fits || got != 5000 || reads != 2 {
		t.Fatalf("over quota: size %d, fits %v, %v after %d reads; want 5000, false after 2", got, fits, err, reads)
	}
	size = 20 // defragmented
	clock = clock.Add(quotaSizeMaxAge / 10)
	if got, fits, err := c.fits(read, 100, 4000); err != nil || !fits || got != 20 || reads != 3 {
		t.Fatalf("after the file shrank: size %d, fits %v, %v after %d reads; want 20, true after 3", got, fits, err, reads)
	}
	// Within quota, the cached size is enough.
	size = 3000
	clock = clock.Add(quotaSizeMaxAge / 10)
	if got, fits, err := c.fits(read, 100, 4000); err != nil || !fits || got != 20 || reads != 3 {
		t.Fatalf("within quota: size %d, fits %v, %v after %d reads; want the cached 20, true after 3", got, fits, err, reads)
	}
}

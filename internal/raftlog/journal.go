package raftlog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	"golang.org/x/sys/unix"
)

// The journal is two files, each a header block followed by records:
//
//	header (journalHeaderSize bytes, the rest zero):
//	  magic [8]byte | generation uint64 | crc32c(magic, generation) uint32
//	record:
//	  length uint32 | crc32c(generation, payload) uint32 | payload
//	payload:
//	  index uint64 | term uint64 | type uint8 | appended-at unix nanos int64 |
//	  data length uint32 | data | extensions length uint32 | extensions
//
// All integers are big-endian. A file is read from its header until the
// first record that does not check out: a zero or oversized length, a CRC
// that does not match, or an index that does not follow the one before.
// Seeding every record's CRC with its file's generation makes the records a
// file held before its last reset fail the check, so a reset is one header
// write, not a rewrite of the file.
//
// One file takes appends (the active one); the other is empty, or holds the
// entries being copied into the log store by a checkpoint. The empty one
// always has the higher generation, so that after a crash the records of the
// lower generation, which are older, are replayed first.
const (
	journalHeaderSize = 4096
	journalRecordHead = 8
	journalPayloadMin = 8 + 8 + 1 + 8 + 4 + 4
	// journalMaxRecord bounds a record's length field, so that a torn or
	// stale length is not taken for a huge record. raft's entries are far
	// smaller: kvd caps a request at a few MiB.
	journalMaxRecord = 1 << 30
)

// journalPrealloc is the space reserved for each file when it is created.
// Appends then write into allocated blocks, so an fdatasync need not also
// write the file system's allocation metadata. A file grows past it if it
// must. (A variable so that tests can make it small.)
var journalPrealloc int64 = 16 << 20

var (
	journalMagic = [8]byte{'k', 'v', 'd', 'j', 'r', 'n', 'l', '1'}
	castagnoli   = crc32.MakeTable(crc32.Castagnoli)
)

// journalNames are the two files of a journal, in its directory.
var journalNames = [2]string{"journal-a", "journal-b"}

// journalFile is one of the two files.
type journalFile struct {
	f    *os.File
	gen  uint64
	tail int64 // where the next record goes
	// first and last are the indexes of the records the file holds since
	// its last reset; both zero when it holds none.
	first, last uint64
}

func (jf *journalFile) empty() bool { return jf.last == 0 }

// journal is the write-ahead journal of a Store. It is not safe for
// concurrent use: the Store serialises appends, switches and resets.
type journal struct {
	dir    string
	files  [2]*journalFile
	active int
	buf    []byte
}

// openJournal opens (creating them if needed) the journal files in dir and
// returns, with the journal, every entry they hold, oldest first. The caller
// must put those entries into the log store and then call resetAll before it
// appends anything.
func openJournal(dir string) (*journal, []*raft.Log, error) {
	j := &journal{dir: dir}
	created := false
	for i, name := range journalNames {
		jf, isNew, err := openJournalFile(filepath.Join(dir, name))
		if err != nil {
			j.close()
			return nil, nil, err
		}
		j.files[i] = jf
		created = created || isNew
	}
	if created {
		if err := syncDir(dir); err != nil {
			j.close()
			return nil, nil, err
		}
	}
	older, newer := 0, 1
	if j.files[1].gen < j.files[0].gen {
		older, newer = 1, 0
	}
	var logs []*raft.Log
	for _, i := range []int{older, newer} {
		read, err := readJournalFile(j.files[i])
		if err != nil {
			j.close()
			return nil, nil, fmt.Errorf("read %s: %w", journalNames[i], err)
		}
		if len(logs) > 0 && len(read) > 0 && read[0].Index != logs[len(logs)-1].Index+1 {
			j.close()
			return nil, nil, fmt.Errorf("journal: %s starts at index %d, after index %d in %s: the journal is inconsistent",
				journalNames[i], read[0].Index, logs[len(logs)-1].Index, journalNames[older])
		}
		logs = append(logs, read...)
	}
	return j, logs, nil
}

// openJournalFile opens path, creating and preallocating it if it does not
// exist. A file whose header does not check out (a reset torn by a crash)
// has generation 0 and is read as empty.
func openJournalFile(path string) (*journalFile, bool, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	isNew := false
	if errors.Is(err, os.ErrNotExist) {
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		isNew = true
	}
	if err != nil {
		return nil, false, fmt.Errorf("open journal: %w", err)
	}
	jf := &journalFile{f: f, tail: journalHeaderSize}
	if isNew {
		// Best effort: a file system without fallocate still works, with
		// appends that also extend the file.
		_ = unix.Fallocate(int(f.Fd()), 0, 0, journalPrealloc)
		return jf, true, nil
	}
	var h [journalHeaderSize]byte
	if _, err := f.ReadAt(h[:], 0); err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return nil, false, fmt.Errorf("read journal header: %w", err)
	}
	jf.gen, _ = decodeJournalHeader(h[:])
	return jf, false, nil
}

func encodeJournalHeader(gen uint64) []byte {
	h := make([]byte, journalHeaderSize)
	copy(h, journalMagic[:])
	binary.BigEndian.PutUint64(h[8:], gen)
	binary.BigEndian.PutUint32(h[16:], crc32.Checksum(h[:16], castagnoli))
	return h
}

// decodeJournalHeader returns the generation of a header, and false (with
// generation 0) when it does not check out.
func decodeJournalHeader(h []byte) (uint64, bool) {
	if len(h) < 20 || [8]byte(h[:8]) != journalMagic {
		return 0, false
	}
	if crc32.Checksum(h[:16], castagnoli) != binary.BigEndian.Uint32(h[16:]) {
		return 0, false
	}
	return binary.BigEndian.Uint64(h[8:]), true
}

// readJournalFile returns the entries of jf's generation, up to the first
// record that does not check out, and leaves jf's tail after the last one.
func readJournalFile(jf *journalFile) ([]*raft.Log, error) {
	if jf.gen == 0 {
		return nil, nil
	}
	r := bufio.NewReaderSize(io.NewSectionReader(jf.f, journalHeaderSize, 1<<62), 1<<20)
	var logs []*raft.Log
	head := make([]byte, journalRecordHead)
	var payload []byte
	for {
		if _, err := io.ReadFull(r, head); err != nil {
			break // the end of the file
		}
		n := binary.BigEndian.Uint32(head)
		if n < journalPayloadMin || n > journalMaxRecord {
			break
		}
		if cap(payload) < int(n) {
			payload = make([]byte, n)
		}
		payload = payload[:n]
		if _, err := io.ReadFull(r, payload); err != nil {
			break
		}
		if recordCRC(jf.gen, payload) != binary.BigEndian.Uint32(head[4:]) {
			break
		}
		l, ok := decodeJournalPayload(payload)
		if !ok || (len(logs) > 0 && l.Index != logs[len(logs)-1].Index+1) {
			break
		}
		logs = append(logs, l)
		jf.tail += int64(journalRecordHead) + int64(n)
	}
	if len(logs) > 0 {
		jf.first, jf.last = logs[0].Index, logs[len(logs)-1].Index
	}
	return logs, nil
}

func recordCRC(gen uint64, payload []byte) uint32 {
	var g [8]byte
	binary.BigEndian.PutUint64(g[:], gen)
	return crc32.Update(crc32.Checksum(g[:], castagnoli), castagnoli, payload)
}

func appendJournalRecord(b []byte, gen uint64, l *raft.Log) []byte {
	start := len(b)
	b = append(b, make([]byte, journalRecordHead)...)
	b = binary.BigEndian.AppendUint64(b, l.Index)
	b = binary.BigEndian.AppendUint64(b, l.Term)
	b = append(b, byte(l.Type))
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	b = binary.BigEndian.AppendUint64(b, uint64(at))
	b = binary.BigEndian.AppendUint32(b, uint32(len(l.Data)))
	b = append(b, l.Data...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(l.Extensions)))
	b = append(b, l.Extensions...)
	payload := b[start+journalRecordHead:]
	binary.BigEndian.PutUint32(b[start:], uint32(len(payload)))
	binary.BigEndian.PutUint32(b[start+4:], recordCRC(gen, payload))
	return b
}

func decodeJournalPayload(p []byte) (*raft.Log, bool) {
	if len(p) < journalPayloadMin {
		return nil, false
	}
	l := &raft.Log{
		Index: binary.BigEndian.Uint64(p),
		Term:  binary.BigEndian.Uint64(p[8:]),
		Type:  raft.LogType(p[16]),
	}
	if at := int64(binary.BigEndian.Uint64(p[17:])); at != 0 {
		l.AppendedAt = time.Unix(0, at)
	}
	p = p[25:]
	n := binary.BigEndian.Uint32(p)
	if uint64(n)+4 > uint64(len(p)-4) {
		return nil, false
	}
	l.Data = append([]byte(nil), p[4:4+n]...)
	p = p[4+n:]
	m := binary.BigEndian.Uint32(p)
	if uint64(m) != uint64(len(p)-4) {
		return nil, false
	}
	if m > 0 {
		l.Extensions = append([]byte(nil), p[4:]...)
	}
	return l, true
}

// append writes logs to the active file and makes them durable: one write,
// one fdatasync. logs must follow the file's last record.
func (j *journal) append(logs []*raft.Log) error {
	jf := j.files[j.active]
	b := j.buf[:0]
	for _, l := range logs {
		b = appendJournalRecord(b, jf.gen, l)
	}
	j.buf = b
	if cap(j.buf) > 4<<20 {
		j.buf = nil // do not keep a huge buffer for the next small append
	}
	if _, err := jf.f.WriteAt(b, jf.tail); err != nil {
		return fmt.Errorf("journal write: %w", err)
	}
	if err := fdatasync(jf.f); err != nil {
		return fmt.Errorf("journal sync: %w", err)
	}
	jf.tail += int64(len(b))
	if jf.empty() {
		jf.first = logs[0].Index
	}
	jf.last = logs[len(logs)-1].Index
	return nil
}

// activeBytes is how much the active file holds.
func (j *journal) activeBytes() int64 { return j.files[j.active].tail - journalHeaderSize }

// switchActive makes the other file, which must be empty, take the appends.
// It returns the formerly active file, the range of indexes it holds, and
// the generation to reset it to once they are in the log store: above the
// new active file's, so that it stays the newer of the two.
func (j *journal) switchActive() (old int, first, last, gen uint64) {
	old = j.active
	j.active = 1 - old
	return old, j.files[old].first, j.files[old].last, j.files[j.active].gen + 1
}

// resetAll empties both files: the active one gets a generation above every
// generation used so far, the other one above that.
func (j *journal) resetAll() error {
	gen := max(j.files[0].gen, j.files[1].gen) + 1
	if err := j.reset(j.active, gen); err != nil {
		return err
	}
	return j.reset(1-j.active, gen+1)
}

func (j *journal) reset(i int, gen uint64) error {
	jf := j.files[i]
	if _, err := jf.f.WriteAt(encodeJournalHeader(gen), 0); err != nil {
		return fmt.Errorf("journal reset: %w", err)
	}
	if err := fdatasync(jf.f); err != nil {
		return fmt.Errorf("journal reset: %w", err)
	}
	jf.gen, jf.tail, jf.first, jf.last = gen, journalHeaderSize, 0, 0
	return nil
}

func (j *journal) close() error {
	var errs []error
	for _, jf := range j.files {
		if jf != nil {
			errs = append(errs, jf.f.Close())
		}
	}
	return errors.Join(errs...)
}

func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

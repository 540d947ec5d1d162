package main

import (
	"encoding/hex"
	"encoding/json"
	"io"
)

// jsonPrinter writes one JSON document per command, on one line, with
// kvctl's field names; ids are numbers.
type jsonPrinter struct {
	out io.Writer
}

var _ printer = (*jsonPrinter)(nil)

type jsonSnapshotStatus struct {
	Path         string `json:"path"`
	Hash         string `json:"hash"`
	SHA256       string `json:"sha256"`
	ChecksumOK   bool   `json:"checksum_ok"`
	Revision     int64  `json:"revision"`
	TotalKeys    int    `json:"total_keys"`
	TotalSize    int64  `json:"total_size"`
	AppliedIndex uint64 `json:"applied_index"`
	ClusterID    uint64 `json:"cluster_id"`
}

type jsonSnapshotRestored struct {
	Path           string `json:"path"`
	DataDir        string `json:"data_dir"`
	Name           string `json:"name"`
	InitialCluster string `json:"initial_cluster"`
	Revision       int64  `json:"revision"`
	TotalKeys      int    `json:"total_keys"`
	StartCommand   string `json:"start_command"`
}

type jsonMemberID struct {
	ID   uint64 `json:"id"`
	Name string `json:"name"`
}

func (p *jsonPrinter) write(v any) error {
	enc := json.NewEncoder(p.out)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func (p *jsonPrinter) SnapshotStatus(s snapshotStatus) error {
	return p.write(jsonSnapshotStatus{
		Path:         s.Path,
		Hash:         shortHash(s.SHA256),
		SHA256:       hex.EncodeToString(s.SHA256),
		ChecksumOK:   s.ChecksumOK,
		Revision:     s.Info.Revision,
		TotalKeys:    s.Info.Keys,
		TotalSize:    s.Info.Size,
		AppliedIndex: s.Info.AppliedIndex,
		ClusterID:    s.Info.ClusterID,
	})
}

func (p *jsonPrinter) SnapshotRestore(r snapshotRestored) error {
	return p.write(jsonSnapshotRestored{
		Path:           r.Path,
		DataDir:        r.DataDir,
		Name:           r.Name,
		InitialCluster: r.InitialCluster,
		Revision:       r.Info.Revision,
		TotalKeys:      r.Info.Keys,
		StartCommand:   restoreStartCommand(r),
	})
}

// MemberIDs writes a JSON array with one object per name.
func (p *jsonPrinter) MemberIDs(ids []memberID) error {
	out := make([]jsonMemberID, 0, len(ids))
	for _, m := range ids {
		out = append(out, jsonMemberID{ID: m.ID, Name: m.Name})
	}
	return p.write(out)
}

package observe

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Snapshot kinds for Metrics.ObserveSnapshot.
const (
	SnapshotPersist = "persist" // writing a snapshot out (FSMSnapshot.Persist)
	SnapshotRestore = "restore" // loading one in (FSM.Restore)
)

var (
	// latencyBuckets span a local apply (tens of microseconds) to a request
	// that waited out a leader election (seconds).
	latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	// snapshotBuckets span a near-empty store to a multi-gigabyte one.
	snapshotBuckets = []float64{.01, .05, .1, .5, 1, 5, 10, 30, 60, 120, 300, 600}
	// batchBuckets go up to raft's MaxAppendEntries (256 by default) and the
	// commit queue's 512 proposals per entry, and past.
	batchBuckets = prometheus.ExponentialBuckets(1, 2, 11) // 1 .. 1024
	// diskBuckets span an fdatasync on a fast SSD (tens of microseconds) to
	// a stalled disk (seconds). A wait that did not happen falls in the
	// first bucket.
	diskBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
)

// Metrics holds a member's metrics in a registry of its own. Its methods are
// safe for concurrent use and do not allocate on the common path. A nil
// *Metrics is valid: its methods do nothing and its interceptors only call
// the handler.
type Metrics struct {
	reg *prometheus.Registry

	leaderChanges prometheus.Counter
	applyDuration prometheus.Histogram
	applyBatch    prometheus.Histogram
	entryWrites   prometheus.Histogram
	readIndex     prometheus.Histogram
	leaderRounds  prometheus.Counter
	logAppend     *prometheus.HistogramVec
	// logAppendModes holds logAppend's children: [sync, background].
	logAppendModes [2]prometheus.Observer
	logDurableWait prometheus.Histogram
	logCheckpoint  prometheus.Histogram
	logCheckpointN prometheus.Counter
	snapshot       *prometheus.HistogramVec
	// snapshotKnown holds the children of snapshot for the known kinds:
	// [persist, restore][ok, error].
	snapshotKnown [2][2]prometheus.Observer
	grpc          *grpcMetrics
}

// NewMetrics returns metrics registered in a new private registry, with the
// Go runtime and process collectors and, when src is not nil, the gauges read
// from src at scrape time.
func NewMetrics(src Source) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kvd_raft_leader_changes_total",
			Help: "Times this member saw the raft leader change.",
		}),
		applyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kvd_fsm_apply_duration_seconds",
			Help:    "Time the state machine took to apply one batch of committed entries.",
			Buckets: latencyBuckets,
		}),
		applyBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kvd_fsm_apply_batch_size",
			Help:    "Entries in one batch applied by the state machine.",
			Buckets: batchBuckets,
		}),
		entryWrites: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kvd_raft_entry_proposals",
			Help:    "Proposals (writes) carried by one log entry this member appended as leader; above 1 when writes queued up during a commit shared the entry.",
			Buckets: batchBuckets,
		}),
		readIndex: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kvd_read_index_duration_seconds",
			Help:    "Time to obtain a read index for a batch of linearizable reads.",
			Buckets: latencyBuckets,
		}),
		leaderRounds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kvd_read_index_leadership_rounds_total",
			Help: "Rounds this member began, as leader, to confirm its leadership with a quorum for linearizable reads; one round serves every read that was waiting when it began.",
		}),
		logAppend: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kvd_raft_log_append_duration_seconds",
			Help:    "Time to make entries durable in this member's raft log (a journal write and one fdatasync), by mode: background for the leader's writes made while it replicates, sync for writes raft waited for (a follower's, a configuration change).",
			Buckets: diskBuckets,
		}, []string{"mode"}),
		logDurableWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kvd_raft_log_durable_wait_seconds",
			Help:    "Time the state machine waited, before applying committed entries, for this member's own copy of them to reach the disk; above zero only on a leader whose disk was slower than a follower's acknowledgement.",
			Buckets: diskBuckets,
		}),
		logCheckpoint: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kvd_raft_log_checkpoint_duration_seconds",
			Help:    "Time to copy journaled raft log entries into raft.db (one bbolt commit), per checkpoint.",
			Buckets: diskBuckets,
		}),
		logCheckpointN: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kvd_raft_log_checkpoint_entries_total",
			Help: "Raft log entries copied from the journal into raft.db by checkpoints.",
		}),
		snapshot: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kvd_snapshot_duration_seconds",
			Help:    "Time to persist or restore a state machine snapshot, by kind and result.",
			Buckets: snapshotBuckets,
		}, []string{"kind", "result"}),
		grpc: newGRPCMetrics(),
	}
	for i, mode := range []string{"sync", "background"} {
		m.logAppendModes[i] = m.logAppend.WithLabelValues(mode)
	}
	for i, kind := range []string{SnapshotPersist, SnapshotRestore} {
		for j, result := range []string{"ok", "error"} {
			m.snapshotKnown[i][j] = m.snapshot.WithLabelValues(kind, result)
		}
	}
	m.reg.MustRegister(
		m.leaderChanges, m.applyDuration, m.applyBatch, m.entryWrites, m.readIndex, m.leaderRounds, m.snapshot,
		m.logAppend, m.logDurableWait, m.logCheckpoint, m.logCheckpointN,
		m.grpc.requests, m.grpc.duration,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if src != nil {
		m.AddSource(src)
	}
	return m
}

// AddSource adds the gauges read from src at scrape time, for metrics made
// before their source existed (a member reports to its metrics from the
// start). Call it once.
func (m *Metrics) AddSource(src Source) {
	m.reg.MustRegister(newSourceCollector(src))
}

// Gatherer returns the registry the metrics are in, for readers in the
// same process (the web console's charts) that want them without a scrape.
// A nil *Metrics has none and returns nil.
func (m *Metrics) Gatherer() prometheus.Gatherer {
	if m == nil {
		return nil
	}
	return m.reg
}

// LeaderChanged counts a change of raft leader seen by this member.
func (m *Metrics) LeaderChanged() {
	if m == nil {
		return
	}
	m.leaderChanges.Inc()
}

// ObserveApply records one batch of batchSize entries applied by the state
// machine in d.
func (m *Metrics) ObserveApply(d time.Duration, batchSize int) {
	if m == nil {
		return
	}
	m.applyDuration.Observe(d.Seconds())
	m.applyBatch.Observe(float64(batchSize))
}

// ObserveEntry records one log entry appended by the leader carrying
// proposals writes.
func (m *Metrics) ObserveEntry(proposals int) {
	if m == nil {
		return
	}
	m.entryWrites.Observe(float64(proposals))
}

// ObserveSnapshot records a snapshot of the given kind (SnapshotPersist or
// SnapshotRestore) that took d and failed when err is not nil.
func (m *Metrics) ObserveSnapshot(kind string, d time.Duration, err error) {
	if m == nil {
		return
	}
	result := 0
	if err != nil {
		result = 1
	}
	switch kind {
	case SnapshotPersist:
		m.snapshotKnown[0][result].Observe(d.Seconds())
	case SnapshotRestore:
		m.snapshotKnown[1][result].Observe(d.Seconds())
	default:
		m.snapshot.WithLabelValues(kind, [2]string{"ok", "error"}[result]).Observe(d.Seconds())
	}
}

// ObserveReadIndex records the time taken to obtain one read index.
func (m *Metrics) ObserveReadIndex(d time.Duration) {
	if m == nil {
		return
	}
	m.readIndex.Observe(d.Seconds())
}

// LeadershipRoundBegun counts a round of leadership confirmation that has
// asked the followers.
func (m *Metrics) LeadershipRoundBegun() {
	if m == nil {
		return
	}
	m.leaderRounds.Inc()
}

// ObserveLogAppend records one write to the raft log that took d; background
// is true for the leader's writes made while it replicates.
func (m *Metrics) ObserveLogAppend(d time.Duration, background bool) {
	if m == nil {
		return
	}
	i := 0
	if background {
		i = 1
	}
	m.logAppendModes[i].Observe(d.Seconds())
}

// ObserveLogDurableWait records how long the state machine waited for this
// member's copy of entries it was about to apply.
func (m *Metrics) ObserveLogDurableWait(d time.Duration) {
	if m == nil {
		return
	}
	m.logDurableWait.Observe(d.Seconds())
}

// ObserveLogCheckpoint records one checkpoint of the raft log's journal: it
// wrote entries into raft.db in d.
func (m *Metrics) ObserveLogCheckpoint(d time.Duration, entries int) {
	if m == nil {
		return
	}
	m.logCheckpoint.Observe(d.Seconds())
	m.logCheckpointN.Add(float64(entries))
}

// raftStates are the values of kvd_raft_state's state label.
var raftStates = [...]string{"leader", "follower", "candidate", "shutdown"}

// sourceCollector exports the gauges read from a Source at scrape time.
type sourceCollector struct {
	src    Source
	state  *prometheus.Desc
	gauges []sourceGauge
}

type sourceGauge struct {
	desc  *prometheus.Desc
	value func(Source) float64
}

func newSourceCollector(src Source) *sourceCollector {
	gauge := func(name, help string, value func(Source) float64) sourceGauge {
		return sourceGauge{prometheus.NewDesc(name, help, nil, nil), value}
	}
	return &sourceCollector{
		src: src,
		state: prometheus.NewDesc("kvd_raft_state",
			"The member's raft state: 1 for the current state, 0 for the others.", []string{"state"}, nil),
		gauges: []sourceGauge{
			gauge("kvd_raft_term", "The member's current raft term.",
				func(s Source) float64 { return float64(s.RaftTerm()) }),
			gauge("kvd_raft_commit_index", "The highest raft log index known to be committed.",
				func(s Source) float64 { return float64(s.CommitIndex()) }),
			gauge("kvd_raft_applied_index", "The highest raft log index applied on this member.",
				func(s Source) float64 { return float64(s.AppliedIndex()) }),
			gauge("kvd_raft_last_log_index", "The index of the last entry in this member's raft log.",
				func(s Source) float64 { return float64(s.LastLogIndex()) }),
			gauge("kvd_db_size_bytes", "Size of the state database in bytes.",
				func(s Source) float64 { return float64(s.DBSizeBytes()) }),
			gauge("kvd_store_revision", "The store's current revision.",
				func(s Source) float64 { return float64(s.Revision()) }),
			gauge("kvd_raft_has_leader", "1 if this member knows a raft leader, else 0.",
				func(s Source) float64 { return boolFloat(s.KnownLeader()) }),
			gauge("kvd_raft_is_learner", "1 if this member is a non-voting learner, else 0.",
				func(s Source) float64 { return boolFloat(s.IsLearner()) }),
		},
	}
}

// Describe implements prometheus.Collector.
func (c *sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.state
	for _, g := range c.gauges {
		ch <- g.desc
	}
}

// Collect implements prometheus.Collector.
func (c *sourceCollector) Collect(ch chan<- prometheus.Metric) {
	state := c.src.RaftState()
	for _, s := range raftStates {
		ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, boolFloat(strings.EqualFold(state, s)), s)
	}
	for _, g := range c.gauges {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, g.value(c.src))
	}
}

var _ prometheus.Collector = (*sourceCollector)(nil)

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

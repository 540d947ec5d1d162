// Package bench is kvd's load generator: the workloads behind `kvctl bench`,
// a latency histogram and the report they print.
//
// It follows the habits of etcd's tools/benchmark, so numbers from the two
// can be put side by side: Config.Conns connections (one client.KV each),
// Config.Clients goroutines sharing them round-robin, a fixed number of
// requests (Config.Total) or a fixed time (Config.Duration), an optional rate
// limit, and keys of Config.KeySize bytes drawn from a key space of
// Config.KeySpace keys. A request's latency is the time its call on the
// client.KV took, retries included; failed requests are counted by gRPC code
// and kept out of the latency histogram, as etcd's report does. Throughput is
// successful requests divided by the time from the first request to the last
// answer.
//
// Nothing here measures wall-clock behaviour in tests: the package's tests
// check counts, keys and percentiles of known data, never timings.
package bench

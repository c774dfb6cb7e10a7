package hub

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/promtext"
)

// Metrics of the hub (docs/observability.md), written in the Prometheus
// text format by WriteMetrics: counters kept since the hub started, and
// gauges read from the state at each scrape (the registry, the audit
// chain, the last convergence run), so a restarted hub reports its
// registry at once.

// verifyBuckets are the upper bounds, in seconds, of the evidence
// verification histogram: a quote and a few-KiB event log take milliseconds;
// seconds mean the hub is starved.
var verifyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

// maxLabelSets bounds each labelled counter: its labels come from the hub's
// own constants, but a verifier's check name is the verifier's, so a bound
// keeps a misbehaving one from growing the hub's memory.
const maxLabelSets = 64

// metrics are the hub's counters. The zero value is ready.
type metrics struct {
	mu sync.Mutex
	// attempts: enrollment and renewal outcomes, by kind and outcome.
	attempts map[[2]string]uint64
	// refusals: every refusal and quarantine, by the check that failed.
	refusals map[string]uint64
	// issued: certificates signed, by kind (node, or a Kubernetes kind).
	issued map[string]uint64
	joins  uint64
	// verify: the evidence verification histogram (counts per bucket, not
	// cumulative; +Inf last).
	verify      [12]uint64
	verifySum   float64
	verifyCount uint64
}

func bump[K comparable](m *map[K]uint64, k K, overflow K, n uint64) {
	if *m == nil {
		*m = map[K]uint64{}
	}
	if _, ok := (*m)[k]; !ok && len(*m) >= maxLabelSets {
		k = overflow
	}
	(*m)[k] += n
}

// attempt counts the outcome of an enrollment or renewal: err nil (a
// certificate), a refusal or quarantine (by its check), or the hub's own
// failure.
func (m *metrics) attempt(kind SessionKind, err error) {
	outcome := "enrolled"
	var r *Refusal
	switch {
	case err == nil:
		m.issue("node", 1)
	case errors.As(err, &r) && r.Quarantined:
		outcome = OutcomeQuarantined
	case errors.As(err, &r):
		outcome = OutcomeRefused
	default:
		outcome = "error"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	bump(&m.attempts, [2]string{string(kind), outcome}, [2]string{string(kind), "other"}, 1)
	if r != nil {
		bump(&m.refusals, r.Reason.Check, "other", 1)
	}
}

// refusal counts a refusal before a session's end (Begin, Activate).
func (m *metrics) refusal(err error) {
	var r *Refusal
	if !errors.As(err, &r) {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	bump(&m.refusals, r.Reason.Check, "other", 1)
}

func (m *metrics) issue(kind string, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	bump(&m.issued, kind, "other", uint64(n))
}

func (m *metrics) joined() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.joins++
}

func (m *metrics) verified(d time.Duration) {
	s := d.Seconds()
	i, _ := slices.BinarySearch(verifyBuckets, s)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.verify[i]++
	m.verifySum += s
	m.verifyCount++
}

// registry is what the state holds at a scrape.
type registry struct {
	nodes    []Node
	audit    uint64 // the newest audit entry's number: the chain's length
	revoked  int
	lastRun  *api.RunRecord
	windowTo time.Time
}

func (s *Store) registry() (registry, error) {
	var out registry
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		if out.nodes, err = list[Node](tx, bucketNodes); err != nil {
			return err
		}
		if k, _ := tx.Bucket(bucketAudit).Cursor().Last(); k != nil {
			out.audit = binary.BigEndian.Uint64(k)
		}
		out.revoked = tx.Bucket(bucketRevoked).Stats().KeyN
		if b := tx.Bucket(bucketRuns); b != nil {
			if k, v := b.Cursor().Last(); k != nil {
				var r api.RunRecord
				if err := json.Unmarshal(v, &r); err != nil {
					return fmt.Errorf("%w: runs/%d: %w", ErrCorrupt, binary.BigEndian.Uint64(k), err)
				}
				out.lastRun = &r
			}
		}
		return nil
	})
	if err != nil {
		return out, err
	}
	w, err := s.Window()
	out.windowTo = w.Until
	return out, err
}

// nodeStates are the states the per-state gauges always show, so a
// query for quarantined nodes finds a 0 rather than nothing.
var nodeStates = []State{StatePending, StateEnrolled, StateQuarantined, StateRevoked, StateFenced, StateReplaced}

// WriteMetrics writes the hub's metrics in the Prometheus text format.
func (h *Hub) WriteMetrics(w io.Writer) error {
	reg, err := h.opt.Store.registry()
	if err != nil {
		return err
	}
	var b strings.Builder
	family := func(name, typ, help string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	c := h.Counts()
	family("kubedos_hub_refused_total", "counter", "Calls the hub refused at its edge, by reason.")
	fmt.Fprintf(&b, "kubedos_hub_refused_total{reason=\"rate-limit\"} %d\n", c.RateLimited)
	fmt.Fprintf(&b, "kubedos_hub_refused_total{reason=\"anonymous\"} %d\n", c.Anonymous)
	fmt.Fprintf(&b, "kubedos_hub_refused_total{reason=\"revoked-certificate\"} %d\n", c.Revoked)

	family("kubedos_hub_node_state", "gauge", "Each node the hub knows, with its role and state (always 1).")
	slices.SortFunc(reg.nodes, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	byState := map[State]int{}
	for _, n := range reg.nodes {
		byState[n.State]++
		fmt.Fprintf(&b, "kubedos_hub_node_state{node=%s,role=%s,state=%s} 1\n", promtext.Label(n.Name), promtext.Label(n.Role), promtext.Label(string(n.State)))
	}
	family("kubedos_hub_nodes", "gauge", "Nodes in the hub's registry, by state.")
	for _, st := range nodeStates {
		fmt.Fprintf(&b, "kubedos_hub_nodes{state=%s} %d\n", promtext.Label(string(st)), byState[st])
	}
	family("kubedos_hub_node_certificate_expiry_timestamp_seconds", "gauge", "When each enrolled node's newest certificate expires.")
	for _, n := range reg.nodes {
		if n.State == StateEnrolled && !n.CertNotAfter.IsZero() {
			fmt.Fprintf(&b, "kubedos_hub_node_certificate_expiry_timestamp_seconds{node=%s} %d\n", promtext.Label(n.Name), n.CertNotAfter.Unix())
		}
	}
	family("kubedos_hub_node_upgrade_pending", "gauge", "1 for each node assigned a build it has not attested yet (an upgrade under way, or one rolled back).")
	for _, n := range reg.nodes {
		if n.Target != "" && n.State == StateEnrolled {
			fmt.Fprintf(&b, "kubedos_hub_node_upgrade_pending{node=%s,target=%s} 1\n", promtext.Label(n.Name), promtext.Label(n.Target))
		}
	}
	family("kubedos_hub_audit_entries", "gauge", "Length of the hash-chained audit log (the newest entry's number).")
	fmt.Fprintf(&b, "kubedos_hub_audit_entries %d\n", reg.audit)
	family("kubedos_hub_revoked_certificates", "gauge", "Certificates in the revocation list.")
	fmt.Fprintf(&b, "kubedos_hub_revoked_certificates %d\n", reg.revoked)
	family("kubedos_hub_enrollment_window_open", "gauge", "1 while an enrollment window admits any EK.")
	fmt.Fprintf(&b, "kubedos_hub_enrollment_window_open %d\n", promtext.Bool(reg.windowTo.After(h.now())))
	if r := reg.lastRun; r != nil {
		family("kubedos_hub_convergence_last_run_timestamp_seconds", "gauge", "When the last convergence run recorded at the hub ended.")
		fmt.Fprintf(&b, "kubedos_hub_convergence_last_run_timestamp_seconds %d\n", r.Ended.Unix())
		family("kubedos_hub_convergence_last_run", "gauge", "The last convergence run's outcome (1 for the outcome it had).")
		for _, o := range []string{"converged", "drifted", "failed"} {
			fmt.Fprintf(&b, "kubedos_hub_convergence_last_run{outcome=%q} %d\n", o, promtext.Bool(r.Outcome == o))
		}
		family("kubedos_hub_convergence_last_run_steps", "gauge", "The last convergence run's steps, by outcome.")
		n := r.Counts
		for _, kv := range []struct {
			k string
			v int
		}{{"changed", n.Changed}, {"unchanged", n.Unchanged}, {"drifted", n.Drifted}, {"failed", n.Failed}, {"skipped", n.Skipped}} {
			fmt.Fprintf(&b, "kubedos_hub_convergence_last_run_steps{outcome=%q} %d\n", kv.k, kv.v)
		}
	}
	h.met.write(&b, family)
	_, err = io.WriteString(w, b.String())
	return err
}

func (m *metrics) write(b *strings.Builder, family func(name, typ, help string)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	family("kubedos_hub_enrollments_total", "counter", "Enrollments and renewals that reached their end, by kind and outcome (enrolled, quarantined, refused, error).")
	keys := sortedKeys(m.attempts, func(a, b [2]string) int { return strings.Compare(a[0]+"/"+a[1], b[0]+"/"+b[1]) })
	for _, k := range keys {
		fmt.Fprintf(b, "kubedos_hub_enrollments_total{kind=%s,outcome=%s} %d\n", promtext.Label(k[0]), promtext.Label(k[1]), m.attempts[k])
	}
	family("kubedos_hub_refusals_total", "counter", "Enrollment and renewal refusals and quarantines, by the check that failed.")
	for _, k := range sortedKeys(m.refusals, strings.Compare) {
		fmt.Fprintf(b, "kubedos_hub_refusals_total{check=%s} %d\n", promtext.Label(k), m.refusals[k])
	}
	family("kubedos_hub_certificates_issued_total", "counter", "Certificates the hub signed, by kind (node, or a Kubernetes certificate).")
	for _, k := range sortedKeys(m.issued, strings.Compare) {
		fmt.Fprintf(b, "kubedos_hub_certificates_issued_total{kind=%s} %d\n", promtext.Label(k), m.issued[k])
	}
	family("kubedos_hub_plane_joins_total", "counter", "Plane joins the hub answered (nodes join every 10 s).")
	fmt.Fprintf(b, "kubedos_hub_plane_joins_total %d\n", m.joins)
	family("kubedos_hub_evidence_verification_seconds", "histogram", "Time to verify a node's quote and event log against its build's prediction.")
	var cum uint64
	for i, le := range verifyBuckets {
		cum += m.verify[i]
		fmt.Fprintf(b, "kubedos_hub_evidence_verification_seconds_bucket{le=\"%g\"} %d\n", le, cum)
	}
	cum += m.verify[len(verifyBuckets)]
	fmt.Fprintf(b, "kubedos_hub_evidence_verification_seconds_bucket{le=\"+Inf\"} %d\n", cum)
	fmt.Fprintf(b, "kubedos_hub_evidence_verification_seconds_sum %g\n", m.verifySum)
	fmt.Fprintf(b, "kubedos_hub_evidence_verification_seconds_count %d\n", m.verifyCount)
}

func sortedKeys[K comparable](m map[K]uint64, cmp func(a, b K) int) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, cmp)
	return out
}

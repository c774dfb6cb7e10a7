package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/pki"
	"google.golang.org/grpc/peer"
)

// AuditRecord is one call to the node API: who, what, outcome.
type AuditRecord struct {
	Time    time.Time `json:"time"`
	Actor   string    `json:"actor"`
	Serial  string    `json:"serial,omitempty"`
	Remote  string    `json:"remote,omitempty"`
	Method  string    `json:"method"`
	Target  string    `json:"target,omitempty"`
	Outcome string    `json:"outcome"` // ok, started, unauthenticated, denied, failed
	Detail  string    `json:"detail,omitempty"`
}

// AuditLinePrefix starts the message of every audit record.
const AuditLinePrefix = "KUBEDOSD-AUDIT "

var auditMu sync.Mutex

// AuditJournal sends r to the journal as one entry with its fields
// (KUBEDOS_AUDIT=1, KUBEDOS_ACTOR, KUBEDOS_METHOD, KUBEDOS_OUTCOME…), so
// `journalctl KUBEDOS_AUDIT=1` lists every call and `-u kubedosd` shows them
// in context; it goes through the journal's native socket (go-systemd), not
// kubedosd's standard output, which the unit also copies to the console.
// Without a journal (tests, a workstation) the record is a line on
// standard output.
func AuditJournal(r AuditRecord) {
	b, _ := json.Marshal(r)
	msg := AuditLinePrefix + string(b)
	if journal.Enabled() {
		prio := journal.PriInfo
		if r.Outcome != "ok" && r.Outcome != "started" {
			prio = journal.PriNotice
		}
		err := journal.Send(msg, prio, map[string]string{
			"SYSLOG_IDENTIFIER": "kubedosd",
			"KUBEDOS_AUDIT":     "1",
			"KUBEDOS_ACTOR":     r.Actor,
			"KUBEDOS_SERIAL":    r.Serial,
			"KUBEDOS_REMOTE":    r.Remote,
			"KUBEDOS_METHOD":    r.Method,
			"KUBEDOS_TARGET":    r.Target,
			"KUBEDOS_OUTCOME":   r.Outcome,
		})
		if err == nil {
			return
		}
	}
	auditMu.Lock()
	defer auditMu.Unlock()
	fmt.Fprintln(os.Stdout, msg)
}

func (n *NodeAPI) record(ctx context.Context, pe pki.Peer, actor, method, target string) AuditRecord {
	if actor == "" {
		actor = "anonymous"
	}
	r := AuditRecord{Actor: actor, Serial: pe.Serial, Method: method, Target: target}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		r.Remote = p.Addr.String()
	}
	return r
}

// audit records a call's outcome by its error's class (a gRPC status from
// a keeper counts by its code).
func (n *NodeAPI) audit(r AuditRecord, err error) {
	r.Time = n.cfg.Now().UTC()
	switch errdefs.Class(errdefs.FromGRPC(err)) {
	case nil:
		r.Outcome = "ok"
	case errdefs.ErrUnauthenticated:
		r.Outcome = "unauthenticated"
	case errdefs.ErrPermission:
		r.Outcome = "denied"
	default:
		r.Outcome = "failed"
	}
	if err != nil {
		r.Detail = err.Error()
	}
	n.cfg.Audit(r)
}

// targetOf names what a request acts on, for the audit.
func targetOf(req any) string {
	switch r := req.(type) {
	case *api.RestartServiceRequest:
		return r.Name
	case *api.LogsRequest:
		return r.Unit
	case *api.ConfigApplyRequest:
		if r.DryRun {
			return "config (dry run)"
		}
		return "config"
	case *api.EtcdRemoveMemberRequest:
		// The caller's words, bounded: the audit records refused calls too.
		return fmt.Sprintf("etcd member %q (%q)", clipString(r.Name), clipString(r.ID))
	}
	return ""
}

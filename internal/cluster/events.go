package cluster

import (
	"fmt"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/target"
)

// Event is something a long cluster operation reports as it goes. Its
// String is the line a text front end shows; a front end that wants more
// switches on the type.
type Event interface {
	String() string
}

// Events receives a run's events, in order, on the caller's goroutine.
type Events interface {
	Event(Event)
}

// EventFunc adapts a function to Events.
type EventFunc func(Event)

// Event calls f.
func (f EventFunc) Event(e Event) { f(e) }

// Transient is an event that only shows progress: a terminal overwrites
// it with the next one, a log may drop it.
type Transient interface {
	Event
	transient()
}

// Message is a milestone in words.
type Message struct{ Text string }

func (e Message) String() string { return e.Text }

// Waiting is progress: what is being waited for.
type Waiting struct{ Text string }

func (e Waiting) String() string { return e.Text }
func (Waiting) transient()       {}

// NetworkUp: the machines' LAN exists.
type NetworkUp struct{ Desc string }

func (e NetworkUp) String() string { return e.Desc }

// HubStarted: a hub serves the cluster from this host.
type HubStarted struct {
	Addr, StateDir string
	Already        bool // it was running
}

func (e HubStarted) String() string {
	if e.Already {
		return "hub already running on " + e.Addr
	}
	return fmt.Sprintf("hub listening on %s (state %s)", e.Addr, e.StateDir)
}

// HubKept: the master keeps the hub (it was handed over earlier).
type HubKept struct {
	Node, Addr string
	At         time.Time
}

func (e HubKept) String() string {
	return fmt.Sprintf("the hub is kept by %s on %s (handed over %s)", e.Node, e.Addr, e.At.Format(time.RFC3339))
}

// NodeStarted: a node's machine runs, its EK registered with Hub.
type NodeStarted struct {
	Name, Role, EKHash, Hub, API, Console string
	Already                               bool // it was running
}

func (e NodeStarted) String() string {
	if e.Already {
		return e.Name + ": already running"
	}
	return fmt.Sprintf("%s: started (%s, EK %s…, hub %s); node API on %s; console %s", e.Name, e.Role, e.EKHash[:min(16, len(e.EKHash))], e.Hub, e.API, e.Console)
}

// NodeState: the hub's record of a node changed (registered, enrolled,
// quarantined with Reason, revoked, fenced).
type NodeState struct{ Name, State, Reason string }

func (e NodeState) String() string { return e.Name + ": " + e.State }

// Quarantined reports whether the hub refused the node.
func (e NodeState) Quarantined() bool { return e.State == string(api.NodeQuarantined) }

// Enrolled counts enrolled nodes while waiting (Done: all of them).
type Enrolled struct {
	Count, Of int
	Done      bool
}

func (e Enrolled) String() string {
	if e.Done {
		return fmt.Sprintf("%d of %d nodes enrolled", e.Count, e.Of)
	}
	return fmt.Sprintf("%d/%d nodes enrolled", e.Count, e.Of)
}

// enrolledWaiting is Enrolled before the end: progress only.
type enrolledWaiting struct{ Enrolled }

func (enrolledWaiting) transient() {}

// HandedOver: the master keeps the hub from now on.
type HandedOver struct {
	Node, Addr string
	Records    int
	AuditSeq   uint64
}

func (e HandedOver) String() string {
	return fmt.Sprintf("hub handed to %s: %d node records, CA key sealed to its TPM, audit entry %d; serving on %s",
		e.Node, e.Records, e.AuditSeq, e.Addr)
}

// StepDone: one step of an upgrade of a node is done.
type StepDone struct{ Node, Text string }

func (e StepDone) String() string { return e.Node + ": " + e.Text }

// Sending is an upgrade's transfer progress.
type Sending struct {
	Node, Part  string
	Sent, Total int64
}

func (e Sending) String() string {
	return fmt.Sprintf("%s: sending %s (%d of %d MiB)", e.Node, e.Part, e.Sent>>20, e.Total>>20)
}
func (Sending) transient() {}

// events is a nil-safe sink.
type events struct{ Events }

func (e events) emit(ev Event) {
	if e.Events != nil {
		e.Events.Event(ev)
	}
}

func (e events) msg(format string, args ...any) { e.emit(Message{Text: fmt.Sprintf(format, args...)}) }

func (e events) wait(format string, args ...any) {
	e.emit(Waiting{Text: fmt.Sprintf(format, args...)})
}

// NodeDown: a node's VM was stopped, destroyed, or was not there (cluster
// down, node fence).
type NodeDown struct {
	Name   string
	VMID   int
	Action target.Action
}

func (e NodeDown) String() string {
	switch e.Action {
	case target.ActionDestroyed:
		return fmt.Sprintf("%s: VM %d stopped and destroyed with its disks and TPM state", e.Name, e.VMID)
	case target.ActionAbsent:
		return fmt.Sprintf("%s: no VM %d", e.Name, e.VMID)
	}
	return fmt.Sprintf("%s: VM %d stopped", e.Name, e.VMID)
}

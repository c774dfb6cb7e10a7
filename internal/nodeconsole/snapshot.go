package nodeconsole

import (
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/wg"
)

// Snapshot is what the console shows at one moment. Strings may come from
// the hub or the journal: the renderer bounds and escapes every one.
type Snapshot struct {
	Now         time.Time
	Node, Role  string
	Build, Slot string
	Boot        string // boot counting: "blessed", "trial, 2 tries left"…
	SecureBoot  string
	Kubedosd    string // kubedosd's version
	Enrollment  string // "enrolled", "enrolling", "quarantined", "no hub named"…
	Reason      string // the hub's refusal, or why enrollment has not worked yet
	EKHash      string // sha256 of the EK public key, as the hub registers it
	Hub         string
	HubAnswered time.Time // zero: never in this boot
	Planes      []wg.Status
	PlanesError string
	Healthy     bool
	Checks      []api.HealthCheck
	Journal     []api.LogEntry // kubedosd's last lines, oldest first
	Day0        bool           // no hub named: the setup form is offered
	ConsoleTTY  string         // where this console is drawn, for the footer
}

package agent

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/earlyboot"
	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/nodeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Console line prefixes, for tests and log scrapers.
const (
	EnrolledLinePrefix = "KUBEDOSD-ENROLLED "
	RefusedLinePrefix  = "KUBEDOSD-REFUSED "
)

// Files of the image that enrollment reads.
var (
	CAFile   = "/etc/kubedos/ca.crt"
	RoleFile = "/etc/kubedos/role"
	TPMPath  = "/dev/tpmrm0"
	// HubAddrFile names the hub once a master has taken it over; it wins
	// over SMBIOS's kubedos.hub (which named the operator's hub).
	HubAddrFile = "/var/lib/kubedos/hub.addr"
	// HubDir is where a master keeps the hub it took over.
	HubDir = "/var/lib/kubedos/hub"
)

// Console writes a line to stdout (the journal) and the console.
func Console(line string) {
	consoleLines.Add(1)
	fmt.Println(line)
	if con, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		fmt.Fprintln(con, line)
		con.Close()
	}
}

// runIdentity keeps the node's identity while ctx lasts: when the machine
// names a hub it enrolls on first boot (no identity on the state partition
// yet), then runs the enrolled node's controllers (renewal, node API,
// planes…). A refusal by the hub is final (the node is quarantined there);
// an unreachable hub is retried.
func (a *Agent) runIdentity(ctx context.Context, st Status) error {
	id, err := nodeIdentity()
	if err != nil {
		return err
	}
	for id.Hub == "" {
		// No hub named: a standalone boot, or a bare-metal node waiting
		// for its Day 0 identity on the console.
		a.view.update(func(v *nodeView) { v.name, v.standalone = id.Name, true })
		if a.cfg.OpenConsole == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-a.view.day0:
		}
		if id, err = nodeIdentity(); err != nil {
			return err
		}
	}
	hub, name := id.Hub, id.Name
	if name == "" {
		return errors.New("the node identity names a hub but no kubedos.name for this node")
	}
	caPEM, err := os.ReadFile(a.cfg.CAFile)
	if err != nil {
		return fmt.Errorf("read cluster CA: %w", err)
	}
	block, _ := pem.Decode(caPEM)
	if block == nil {
		return fmt.Errorf("%s is not PEM", a.cfg.CAFile)
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("%s: %w", a.cfg.CAFile, err)
	}
	role, err := os.ReadFile(a.cfg.RoleFile)
	if err != nil {
		return fmt.Errorf("read role: %w", err)
	}
	cfg := EnrollConfig{Hub: hub, CA: ca, Name: name, Role: strings.TrimSpace(string(role)), BuildID: st.Build,
		OpenProver: a.cfg.OpenProver, StateDir: a.cfg.IdentityDir, HubFile: a.cfg.HubAddrFile}
	a.view.update(func(v *nodeView) { v.name, v.enroll, v.standalone = name, &cfg, false })
	return a.runNode(ctx, cfg, st)
}

// nodeIdentity is the node's name and hub: SMBIOS's, else what was typed
// on the console on Day 0 (earlyboot.IdentityFile). The LAN fields are
// kubedos-init's: it reports their problems and boots on, so a bad address
// does not stop enrollment here.
func nodeIdentity() (nodeid.Identity, error) {
	pairs, err := earlyboot.NodeIdentity(earlyboot.IdentityFile)
	if err != nil {
		return nodeid.Identity{}, err
	}
	return nodeid.Decode(map[string]string{nodeid.KeyName: pairs[nodeid.KeyName], nodeid.KeyHub: pairs[nodeid.KeyHub]})
}

// runNode enrolls unless the node has an identity, then runs the enrolled
// node's controllers until ctx ends or the hub refuses the node.
func (a *Agent) runNode(ctx context.Context, cfg EnrollConfig, st Status) error {
	justEnrolled := false
	if _, err := os.Stat(filepath.Join(cfg.StateDir, NodeCertFile)); err == nil {
		a.cfg.Logf("identity present in %s", cfg.StateDir)
	} else {
		if err := a.sup.Run(ctx, enrollment{cfg: cfg, logf: a.cfg.Logf}); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		justEnrolled = true
	}
	return a.runEnrolled(ctx, cfg, st, justEnrolled)
}

// enrollment is the first-boot controller: one attempt of the enrollment
// protocol per run, restarted with backoff while the hub is unreachable;
// a refusal is fatal.
type enrollment struct {
	cfg  EnrollConfig
	logf func(string, ...any)
}

func (enrollment) Name() string { return "enrollment" }

// enrollAttempt bounds one attempt. Not shorter: an attempt restarted
// makes a new AK and session from scratch, so on a starved machine (16
// VMs under TCG on two cores: credential activation alone past 60 s) a
// short bound never lets one finish. The hub bounds its side anyway
// (session 10 min, nonce 2 min); a dead hub fails the calls at once.
const enrollAttempt = 5 * time.Minute

func (e enrollment) Run(ctx context.Context) error {
	attemptCtx, cancel := context.WithTimeout(ctx, enrollAttempt)
	got, err := Enroll(attemptCtx, e.cfg, e.logf)
	cancel()
	switch {
	case err == nil:
		Console(fmt.Sprintf("%s%s serial %x until %s", EnrolledLinePrefix, e.cfg.Name, got.Certificate.SerialNumber, got.Certificate.NotAfter.UTC().Format(time.RFC3339)))
		return nil
	case final(err):
		return Fatal(err)
	}
	return fmt.Errorf("enrollment attempt failed: %w", err)
}

// final reports whether err is the hub's answer (a refusal is final) rather
// than an unreachable hub, which is worth retrying. Client errors come back
// classed (errdefs.FromGRPC) and still carry their gRPC status.
func final(err error) bool {
	if errors.Is(err, errdefs.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	s, ok := status.FromError(err)
	return !ok || (s.Code() != codes.Unavailable && s.Code() != codes.DeadlineExceeded)
}

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
	fmt.Println(line)
	if con, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		fmt.Fprintln(con, line)
		con.Close()
	}
}

// RunIdentity keeps the node's identity while ctx lasts: when the machine
// names a hub it enrolls on first boot (no identity on the state partition
// yet), then renews the certificate with a fresh quote before it expires,
// and serves the node API (NodeAPIAddr) while enrolled. A
// refusal by the hub is final (the node is quarantined there); an
// unreachable hub is retried. keeper (nil on a node that never keeps the
// hub) takes the cluster's hub over when an admin hands it to this node.
func RunIdentity(ctx context.Context, st Status, keeper HubKeeper) error {
	oem, err := earlyboot.OEMStrings()
	if err != nil {
		return err
	}
	// The LAN fields are kubedos-init's: it reports their problems and
	// boots on, so a bad address does not stop enrollment here.
	id, err := nodeid.Decode(map[string]string{nodeid.KeyName: oem[nodeid.KeyName], nodeid.KeyHub: oem[nodeid.KeyHub]})
	if err != nil {
		return err
	}
	hub, name := id.Hub, id.Name
	if hub == "" {
		return nil // no hub named: a standalone boot
	}
	caPEM, err := os.ReadFile(CAFile)
	if err != nil {
		return fmt.Errorf("read cluster CA: %w", err)
	}
	block, _ := pem.Decode(caPEM)
	if block == nil {
		return fmt.Errorf("%s is not PEM", CAFile)
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("%s: %w", CAFile, err)
	}
	role, err := os.ReadFile(RoleFile)
	if err != nil {
		return fmt.Errorf("read role: %w", err)
	}
	cfg := EnrollConfig{Hub: hub, CA: ca, Name: name, Role: strings.TrimSpace(string(role)), BuildID: st.Build,
		TPM: TPMPath, EventLog: EventLogPath, StateDir: IdentityDir, HubFile: HubAddrFile}
	logf := func(f string, a ...any) { Console("kubedosd: " + fmt.Sprintf(f, a...)) }
	if _, err := os.Stat(filepath.Join(IdentityDir, NodeCertFile)); err == nil {
		logf("identity present in %s", IdentityDir)
		return runEnrolled(ctx, cfg, st, false, keeper, logf)
	}
	if err := enroll(ctx, cfg, logf); err != nil {
		return err
	}
	return runEnrolled(ctx, cfg, st, true, keeper, logf)
}

// enroll runs the enrollment protocol until the hub answers.
func enroll(ctx context.Context, cfg EnrollConfig, logf func(string, ...any)) error {
	delay := time.Second
	for attempt := 1; ; attempt++ {
		attemptCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
		got, err := Enroll(attemptCtx, cfg, logf)
		cancel()
		if err == nil {
			Console(fmt.Sprintf("%s%s serial %x until %s", EnrolledLinePrefix, cfg.Name, got.Certificate.SerialNumber, got.Certificate.NotAfter.UTC().Format(time.RFC3339)))
			return nil
		}
		if final(err) {
			return err
		}
		logf("enrollment attempt %d failed: %v; retrying in %s", attempt, err, delay)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		if delay < 30*time.Second {
			delay *= 2
		}
	}
}

// final reports whether err is the hub's answer (a refusal is final) rather
// than an unreachable hub, which is worth retrying.
func final(err error) bool {
	s, ok := status.FromError(errorsRoot(err))
	return !ok || (s.Code() != codes.Unavailable && s.Code() != codes.DeadlineExceeded)
}

// errorsRoot unwraps to the innermost error, where a gRPC status lives.
func errorsRoot(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}

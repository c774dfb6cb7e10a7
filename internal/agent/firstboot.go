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
)

// Console writes a line to stdout (the journal) and the console.
func Console(line string) {
	fmt.Println(line)
	if con, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		fmt.Fprintln(con, line)
		con.Close()
	}
}

// EnrollOnFirstBoot enrolls the node when the machine names a hub and the
// state partition holds no identity yet. A refusal by the hub is final
// (the node is quarantined there); unreachable hubs are retried.
func EnrollOnFirstBoot(ctx context.Context, st Status) error {
	oem, err := OEMStrings()
	if err != nil {
		return err
	}
	hub, name := oem["kubedos.hub"], oem["kubedos.name"]
	if hub == "" {
		return nil // no hub named: a standalone boot
	}
	if name == "" {
		return errors.New("SMBIOS names a hub but no kubedos.name for this node")
	}
	if _, err := os.Stat(filepath.Join(IdentityDir, NodeCertFile)); err == nil {
		Console(fmt.Sprintf("kubedosd: identity present in %s", IdentityDir))
		return nil
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
		TPM: TPMPath, EventLog: EventLogPath, StateDir: IdentityDir}
	logf := func(f string, a ...any) { Console("kubedosd: " + fmt.Sprintf(f, a...)) }
	delay := time.Second
	for attempt := 1; ; attempt++ {
		attemptCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
		got, err := Enroll(attemptCtx, cfg, logf)
		cancel()
		if err == nil {
			Console(fmt.Sprintf("%s%s serial %x until %s", EnrolledLinePrefix, name, got.Certificate.SerialNumber, got.Certificate.NotAfter.UTC().Format(time.RFC3339)))
			return nil
		}
		// The hub's refusals are final; only an unreachable hub is retried.
		if s, ok := status.FromError(errorsRoot(err)); !ok || (s.Code() != codes.Unavailable && s.Code() != codes.DeadlineExceeded) {
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

//go:build integration

package tpmseal

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/measure"
)

// freePort asks the kernel for an unused loopback port.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestSignMatchesSystemdMeasure is the independent oracle for the signed
// PCR 11 policy: systemd's own systemd-measure (252, Debian), asked to sign
// the same UKI sections for our three boot phases with the same key (it
// computes the policy digest in a TPM trial session: swtpm here), writes the
// same tpm2-pcr-signature.json entries, byte for byte, as Sign does from
// our PCR 11 prediction.
func TestSignMatchesSystemdMeasure(t *testing.T) {
	const tool = "/usr/lib/systemd/systemd-measure"
	for _, p := range []string{tool, "swtpm"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not installed", p)
		}
	}
	dir := t.TempDir()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	pubPEM, err := EncodePublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sec := measure.UKISections{
		Linux: make([]byte, 9000), OSRel: []byte("ID=kubedos\n"), Cmdline: []byte("console=ttyS0 quiet"),
		Initrd: make([]byte, 4000), PCRPKey: pubPEM,
	}
	_, _ = rand.Read(sec.Linux)
	_, _ = rand.Read(sec.Initrd)
	files := map[string][]byte{"key.pem": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), "pub.pem": pubPEM,
		"linux": sec.Linux, "osrel": sec.OSRel, "cmdline": sec.Cmdline, "initrd": sec.Initrd}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t)
	if err := os.MkdirAll(filepath.Join(dir, "tpm"), 0o700); err != nil {
		t.Fatal(err)
	}
	swtpm := exec.Command("swtpm", "socket", "--tpm2", "--tpmstate", "dir="+filepath.Join(dir, "tpm"),
		"--server", fmt.Sprintf("type=tcp,bindaddr=127.0.0.1,port=%d", port),
		"--ctrl", fmt.Sprintf("type=tcp,bindaddr=127.0.0.1,port=%d", port+1), "--flags", "startup-clear,not-need-init")
	if err := swtpm.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = swtpm.Process.Kill(); _ = swtpm.Wait() })
	for deadline := time.Now().Add(5 * time.Second); ; {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("swtpm did not listen: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	p := func(n string) string { return filepath.Join(dir, n) }
	out, err := exec.Command(tool, "sign", fmt.Sprintf("--tpm2-device=swtpm:host=127.0.0.1,port=%d", port),
		"--linux="+p("linux"), "--osrel="+p("osrel"), "--cmdline="+p("cmdline"), "--initrd="+p("initrd"), "--pcrpkey="+p("pub.pem"),
		"--private-key="+p("key.pem"), "--public-key="+p("pub.pem"), "--bank=sha256",
		"--phase=", "--phase=sysinit", "--phase=sysinit:ready").Output()
	if err != nil {
		t.Fatalf("systemd-measure sign: %v", err)
	}
	var theirs Signatures
	if err := json.Unmarshal(out, &theirs); err != nil {
		t.Fatalf("systemd-measure output %q: %v", out, err)
	}

	events, err := measure.PredictPCR11(measure.Stub252, sec.Sections())
	if err != nil {
		t.Fatal(err)
	}
	stub, err := measure.Replay(events)
	if err != nil {
		t.Fatal(err)
	}
	var values [][]byte
	for _, ph := range measure.BootPhases {
		values = append(values, measure.PCR11AtPhase(stub, ph.Words...))
	}
	ours, err := Sign(key, values)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ours, theirs) {
		t.Fatalf("our signatures differ from systemd-measure's:\nours   %+v\ntheirs %+v", ours, theirs)
	}
	if _, err := theirs.Verify(&key.PublicKey); err != nil {
		t.Fatalf("systemd-measure's signatures do not verify with our checker: %v", err)
	}
}

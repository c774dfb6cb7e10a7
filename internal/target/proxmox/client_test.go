package proxmox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/errdefs"
	"github.com/kubedos/kubedos/internal/target/proxmox/proxmoxtest"
)

const token = "kubedos@pve!deploy=4b1c2a77-9f0e-4d38-8d7a-3f1b2c9e0a11"

func newFake(t testing.TB) (*proxmoxtest.Fake, *Client) {
	t.Helper()
	f := proxmoxtest.New("pve1", token)
	t.Cleanup(f.Close)
	c, err := New(f.URL(), "pve1", token, f.Fingerprint())
	if err != nil {
		t.Fatal(err)
	}
	c.PollEvery = time.Millisecond
	return f, c
}

func TestNewRefusesBadInput(t *testing.T) {
	for _, tc := range []struct{ name, url, token, want string }{
		{"http", "http://pve:8006/api2/json", token, "want https"},
		{"no host", "https:///api2/json", token, "want https"},
		{"token without secret", "https://pve:8006", "kubedos@pve!deploy", "USER@REALM!TOKENID=SECRET"},
		{"token without realm", "https://pve:8006", "kubedos!deploy=secret", "USER@REALM!TOKENID=SECRET"},
		{"password, not a token", "https://pve:8006", "root@pam", "USER@REALM!TOKENID=SECRET"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.url, "pve1", tc.token, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want %q", err, tc.want)
			}
		})
	}
	c, err := New("https://pve:8006", "pve1", token, nil)
	if err != nil || c.base.String() != "https://pve:8006/api2/json" {
		t.Errorf("base %v, %v: the API path is added when missing", c, err)
	}
}

func TestReadToken(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, body string
		mode       os.FileMode
		want       string
	}{
		{"good", token + "\n", 0o600, ""},
		{"readable by others", token, 0o644, "chmod 600"},
		{"not a token", "hunter2\n", 0o600, "USER@REALM!TOKENID=SECRET"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			if err := os.WriteFile(p, []byte(tc.body), tc.mode); err != nil {
				t.Fatal(err)
			}
			got, err := ReadToken(p)
			if tc.want == "" {
				if err != nil || got != token {
					t.Fatalf("got %q, %v", got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Errorf("err %v, want %q and the file's path", err, tc.want)
			}
		})
	}
	if _, err := ReadToken(filepath.Join(dir, "missing")); err == nil {
		t.Error("read a missing file")
	}
}

func TestTLSAndAuth(t *testing.T) {
	f, c := newFake(t)
	ctx := context.Background()
	v, err := c.Version(ctx)
	if err != nil || v.Release != "8.4" || !v.AtLeast(8, 4) || v.AtLeast(8, 5) || !v.AtLeast(7, 9) {
		t.Fatalf("version %+v, %v", v, err)
	}

	wrongPin := append([]byte(nil), f.Fingerprint()...)
	wrongPin[0] ^= 1
	pinned, _ := New(f.URL(), "pve1", token, wrongPin)
	if _, err := pinned.Version(ctx); err == nil || !strings.Contains(err.Error(), "the spec pins") {
		t.Errorf("another certificate than the pinned one: %v", err)
	}
	unpinned, _ := New(f.URL(), "pve1", token, nil)
	if _, err := unpinned.Version(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a self-signed certificate without a pin: %v", err)
	}

	other, _ := New(f.URL(), "pve1", "kubedos@pve!deploy=wrong", f.Fingerprint())
	_, err = other.Version(ctx)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 401 {
		t.Errorf("wrong token: %v, want a 401 APIError", err)
	}
}

func TestAPIErrorsNameTheParameter(t *testing.T) {
	_, c := newFake(t)
	err := c.CreateVM(context.Background(), map[string][]string{"vmid": {"101"}, "efidisk0": {"local-lvm:0,import-from=local:import/x.raw"}})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 400 {
		t.Fatalf("err %v, want a 400", err)
	}
	for _, want := range []string{"POST /nodes/pve1/qemu", "Parameter verification failed", "efidisk0: need to specify 'efitype'"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	if _, err := c.VMConfig(context.Background(), 999); err == nil || !strings.Contains(err.Error(), "999.conf' does not exist") {
		t.Errorf("missing VM: %v", err)
	}
	if err := c.WaitTask(context.Background(), "not-a-upid"); err == nil {
		t.Error("waited for a task without a UPID")
	}
}

func TestUploadIsCheckedAndNamed(t *testing.T) {
	f, c := newFake(t)
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "disk.qcow2")
	if err := os.WriteFile(p, []byte("QFI\xfbnot really a disk"), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := fileSHA256(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Upload(ctx, "local", "kubedos-disk-1.qcow2", p, strings.Repeat("0", 64)); err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("upload under another SHA-256: %v", err)
	}
	volid, err := c.Upload(ctx, "local", "kubedos-disk-1.qcow2", p, sum)
	if err != nil || volid != "local:import/kubedos-disk-1.qcow2" {
		t.Fatalf("upload: %q, %v", volid, err)
	}
	if b, ok := f.Volume(volid); !ok || string(b) != "QFI\xfbnot really a disk" {
		t.Errorf("stored %q", b)
	}
	vols, err := c.Volumes(ctx, "local", "import")
	if err != nil || len(vols) != 1 || vols[0].VolID != volid || vols[0].Format != "qcow2" {
		t.Errorf("volumes %+v, %v", vols, err)
	}
	if _, err := c.Upload(ctx, "local-lvm", "kubedos-disk-1.qcow2", p, sum); err == nil || !strings.Contains(err.Error(), "does not support") {
		t.Errorf("upload to a block storage: %v", err)
	}
	if _, err := c.Upload(ctx, "local", "../etc/passwd", p, sum); err == nil || !strings.Contains(err.Error(), "import volume name") {
		t.Errorf("a name with a path: %v", err)
	}
	if err := c.DeleteVolume(ctx, "local", volid); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Volume(volid); ok {
		t.Error("volume still there")
	}
}

func TestAPIErrorClassAndText(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   error
	}{{400, errdefs.ErrInvalid}, {401, errdefs.ErrUnauthenticated}, {403, errdefs.ErrPermission}, {500, errdefs.ErrInternal}, {501, errdefs.ErrInvalid}} {
		if err := error(&APIError{Status: tc.status}); !errors.Is(err, tc.want) {
			t.Errorf("%d: class %v, want %v", tc.status, errdefs.Class(err), tc.want)
		}
	}
	if got := printable("bad\x1b[31m\nthing\x00"); got != "bad?[31m thing?" {
		t.Errorf("printable: %q", got)
	}
}

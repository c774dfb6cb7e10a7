package measure

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/kubedos/kubedos/internal/efi"
)

// protoBoot is testdata/proto/boot.json plus the files beside it: the inputs
// and results of a real Secure Boot of a systemd-boot + UKI under OVMF.
type protoBoot struct {
	OwnerGUID    string            `json:"owner_guid"`
	Authenticode map[string]Digest `json:"authenticode"`
	Sections     map[string]Digest `json:"sections"`
	Phases       map[string]Digest `json:"phases"`
	PCRs         map[string]Digest `json:"pcrs"`

	dir string
}

func loadProto(t testing.TB) *protoBoot {
	t.Helper()
	dir := filepath.Join("testdata", "proto")
	b, err := os.ReadFile(filepath.Join(dir, "boot.json"))
	if err != nil {
		t.Fatal(err)
	}
	p := &protoBoot{dir: dir}
	if err := json.Unmarshal(b, p); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *protoBoot) file(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pcrs returns the PCR values read in the booted guest.
func (p *protoBoot) pcrs(t testing.TB) map[int][]byte {
	t.Helper()
	out := map[int][]byte{}
	for k, v := range p.PCRs {
		i, err := strconv.Atoi(k)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = v
	}
	return out
}

// inputs builds the prediction inputs from the recorded artifacts, with the
// .cmdline and .osrel contents given.
func (p *protoBoot) inputs(t testing.TB, cmdline, osrel []byte) Inputs {
	t.Helper()
	owner, err := efi.Parse(p.OwnerGUID)
	if err != nil {
		t.Fatal(err)
	}
	db := p.file(t, "db.esl")
	auth, err := FindSignatureData(db, p.file(t, "db.cer"))
	if err != nil {
		t.Fatal(err)
	}
	if got := efi.GUID(auth[:16]); got != owner {
		t.Fatalf("db entry owner %s, want %s", got, owner)
	}
	secs := UKISections{OSRel: osrel, Cmdline: cmdline}.Sections()
	secs = append(secs, Section{Name: ".linux", Digest: p.Sections[".linux"]}, Section{Name: ".initrd", Digest: p.Sections[".initrd"]})
	return Inputs{
		BootLoader:  p.Authenticode["systemd-boot"],
		UKI:         p.Authenticode["uki"],
		SecureBoot:  SecureBootVars{PK: p.file(t, "PK.esl"), KEK: p.file(t, "KEK.esl"), DB: db},
		Authorities: [][]byte{auth, auth}, // systemd-boot and the UKI, both signed with db
		Stub:        Stub252,
		Sections:    secs,
	}
}

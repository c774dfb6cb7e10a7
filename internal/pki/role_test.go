package pki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"slices"
	"testing"
)

func TestRoleOf(t *testing.T) {
	tests := []struct {
		org  []string
		want Role
		err  error
	}{
		{[]string{"kubedos:admin"}, RoleAdmin, nil},
		{[]string{"kubedos:operator"}, RoleOperator, nil},
		{[]string{"kubedos:reader"}, RoleReader, nil},
		{[]string{"kubedos:node"}, RoleNode, nil},
		{[]string{"Example Corp", "kubedos:reader"}, RoleReader, nil},
		{nil, "", ErrNoRole},
		{[]string{"kubedos"}, "", ErrNoRole},
		{[]string{"kubedos:root"}, "", ErrNoRole},
		{[]string{"kubedos:Admin"}, "", ErrNoRole},
		{[]string{"kubedos:reader", "kubedos:admin"}, "", ErrNoRole},
	}
	for _, tt := range tests {
		got, err := RoleOf(&x509.Certificate{Subject: pkix.Name{CommonName: "x", Organization: tt.org}})
		if got != tt.want || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
			t.Errorf("RoleOf(O=%q) = %q, %v; want %q, %v", tt.org, got, err, tt.want, tt.err)
		}
	}
	if _, err := RoleOf(nil); !errors.Is(err, ErrNoRole) {
		t.Errorf("RoleOf(nil) = %v, want ErrNoRole", err)
	}
}

func TestAllows(t *testing.T) {
	// The authorisation table, written out: admin > operator > reader; a
	// node may only renew and read the revocation list.
	want := map[Action]map[Role]bool{
		ActionRead:             {RoleAdmin: true, RoleOperator: true, RoleReader: true},
		ActionRegisterEK:       {RoleAdmin: true, RoleOperator: true},
		ActionOpenWindow:       {RoleAdmin: true, RoleOperator: true},
		ActionRevoke:           {RoleAdmin: true, RoleOperator: true},
		ActionFence:            {RoleAdmin: true, RoleOperator: true},
		ActionReplace:          {RoleAdmin: true, RoleOperator: true},
		ActionIssueClient:      {RoleAdmin: true},
		ActionRevokeClient:     {RoleAdmin: true},
		ActionRenew:            {RoleNode: true},
		ActionJoinPlanes:       {RoleNode: true},
		ActionReadRevocations:  {RoleAdmin: true, RoleOperator: true, RoleReader: true, RoleNode: true},
		ActionRestartService:   {RoleAdmin: true, RoleOperator: true},
		ActionApplyConfig:      {RoleAdmin: true, RoleOperator: true},
		ActionRecordRun:        {RoleAdmin: true, RoleOperator: true},
		ActionPower:            {RoleAdmin: true},
		ActionUpgrade:          {RoleAdmin: true},
		ActionTakeOverHub:      {RoleAdmin: true},
		ActionRetireBuild:      {RoleAdmin: true},
		ActionKubeAdmin:        {RoleAdmin: true},
		ActionKubeCerts:        {RoleNode: true},
		ActionObservability:    {RoleNode: true},
		ActionSeal:             {RoleAdmin: true},
		ActionConsoleLogin:     {RoleAdmin: true, RoleOperator: true, RoleReader: true},
		ActionEtcdRemoveMember: {RoleAdmin: true},
		ActionEtcdSnapshotRead: {RoleAdmin: true},
		ActionEtcdRestore:      {RoleAdmin: true},
		ActionEtcdSnapshotTake: {RoleAdmin: true, RoleOperator: true},
		Action("format"):       {},
	}
	for action, allowed := range want {
		for _, role := range []Role{RoleAdmin, RoleOperator, RoleReader, RoleNode, "", "root"} {
			if got := Allows(role, action); got != allowed[role] {
				t.Errorf("Allows(%q, %q) = %v, want %v", role, action, got, allowed[role])
			}
		}
	}
	// Every action this package declares is in the table above.
	for a := range minRole {
		if _, ok := want[a]; !ok {
			t.Errorf("action %q is missing from the test table", a)
		}
	}
}

func TestCovers(t *testing.T) {
	// A console login may ask for a lower role than the certificate's,
	// never a higher one, and never node.
	roles := []Role{RoleAdmin, RoleOperator, RoleReader, RoleNode, ""}
	want := map[Role][]Role{RoleAdmin: {RoleAdmin, RoleOperator, RoleReader}, RoleOperator: {RoleOperator, RoleReader}, RoleReader: {RoleReader}}
	for _, r := range roles {
		for _, o := range roles {
			if got := r.Covers(o); got != slices.Contains(want[r], o) {
				t.Errorf("%q.Covers(%q) = %v", r, o, got)
			}
		}
	}
}

func TestParseRole(t *testing.T) {
	for _, r := range []Role{RoleAdmin, RoleOperator, RoleReader, RoleNode} {
		if got, err := ParseRole(string(r)); got != r || err != nil {
			t.Errorf("ParseRole(%q) = %q, %v", r, got, err)
		}
	}
	if _, err := ParseRole("superuser"); !errors.Is(err, ErrNoRole) {
		t.Errorf("ParseRole(superuser) = %v, want ErrNoRole", err)
	}
}

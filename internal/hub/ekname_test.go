package hub

import (
	"context"
	"errors"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// Item 7: an EK registered without a node name could take any unenrolled
// name, the master's included. Registration now names the node; an EK
// presented under another name is refused with both names.
func TestAttackRegisteredEKTakesAnotherName(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	worker := newNode(t, "master", "master") // a worker's TPM, claiming the master
	// The unnamed registration the spec's registeredEKs used to make.
	err := e.hub.RegisterEK(ctx, operator, "", worker.tpm.ekHash())
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("registering an EK without a node name: %v, want ErrInvalid", err)
	}
	if _, err := enroll(ctx, t, e.hub, worker, steps{}); !errors.Is(err, ErrUnknownEK) {
		t.Fatalf("a TPM registered without a name enrolled as the master: %v", err)
	}
	// Registered for w-1, presented as master: refused, both names said.
	if err := e.hub.RegisterEK(ctx, operator, "w-1", worker.tpm.ekHash()); err != nil {
		t.Fatal(err)
	}
	_, err = enroll(ctx, t, e.hub, worker, steps{})
	if !errors.Is(err, ErrClone) || !strings.Contains(err.Error(), "w-1") || !strings.Contains(err.Error(), "master") {
		t.Errorf("EK of w-1 as master: %v, want a refusal naming w-1 and master", err)
	}
}

// A hub state from before names were required may hold unnamed
// registrations: they admit nobody.
func TestLegacyUnnamedRegistrationAdmitsNobody(t *testing.T) {
	e := newEnv(t)
	n := newNode(t, "master", "master")
	if err := e.store.putEK(EKRecord{Hash: n.tpm.ekHash(), Registered: true, At: t0, By: "old"}); err != nil {
		t.Fatal(err)
	}
	if _, err := enroll(context.Background(), t, e.hub, n, steps{}); !errors.Is(err, ErrUnknownEK) || !strings.Contains(err.Error(), "no node name") {
		t.Errorf("unnamed legacy registration: %v, want ErrUnknownEK saying it names no node", err)
	}
}

func (s *Store) putEK(r EKRecord) error {
	return s.db.Update(func(tx *bolt.Tx) error { return put(tx, bucketEKs, r.Hash, r) })
}

package hub

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestStoreReopen(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	nodes := []*node{newNode(t, "master", "master"), newNode(t, "w-1", "worker"), newNode(t, "w-2", "worker")}
	for _, n := range nodes {
		e.register(n)
		e.mustEnroll(n)
	}
	if err := e.hub.Revoke(ctx, operator, "w-2", "drill"); err != nil {
		t.Fatal(err)
	}
	before, err := e.store.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	headBefore, err := e.store.VerifyAuditChain()
	if err != nil {
		t.Fatal(err)
	}
	e.restart()
	after, err := e.store.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(after)
	b, _ := json.Marshal(before)
	if string(a) != string(b) {
		t.Errorf("nodes changed across a restart:\nbefore %s\nafter  %s", b, a)
	}
	head, err := e.store.VerifyAuditChain()
	if err != nil || head != headBefore {
		t.Errorf("audit head %+v, %v; before the restart %+v", head, err, headBefore)
	}
	if e.hub.Revocations().Len() != 1 {
		t.Errorf("revocation set of %d after reopen, want 1", e.hub.Revocations().Len())
	}
	// Appending continues the chain.
	if err := e.hub.Replace(ctx, operator, "w-2", "rebuilt"); err != nil {
		t.Fatal(err)
	}
	if head, err := e.store.VerifyAuditChain(); err != nil || head.Seq != headBefore.Seq+1 {
		t.Errorf("after one more action: head %+v, %v", head, err)
	}
	// A second process cannot open the file while the hub holds it.
	if _, err := Open(e.path); err == nil {
		t.Error("a second Open of a held store succeeded")
	}
}

func TestStoreClosed(t *testing.T) {
	e := newEnv(t)
	e.store.Close()
	if err := e.hub.RegisterEK(context.Background(), operator, "w-1", strings.Repeat("0", 64)); !errors.Is(err, ErrClosed) {
		t.Errorf("write after close = %v, want ErrClosed", err)
	}
	if _, err := e.store.Nodes(); !errors.Is(err, ErrClosed) {
		t.Errorf("read after close = %v, want ErrClosed", err)
	}
}

func TestTakeNonce(t *testing.T) {
	st, err := Open(t.TempDir() + "/hub.db")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tpm := newTPM(t)
	if err := st.RegisterEK("test", "w-1", tpm.ekHash(), t0); err != nil {
		t.Fatal(err)
	}
	secret := []byte("secret")
	sh := sha256.Sum256(secret)
	newSession := func(id string) {
		t.Helper()
		s := Session{ID: id, Kind: KindEnroll, Name: "w-1", Role: "worker", EKHash: tpm.ekHash(), SecretHash: sh[:],
			Created: t0, Expires: t0.Add(10 * time.Minute)}
		if err := st.BeginSession(s, EKFacts{}, t0); err != nil {
			t.Fatal(err)
		}
	}
	newSession("s1")
	nonce := []byte("n1")
	tests := []struct {
		name  string
		id    string
		nonce []byte
		at    time.Time
		want  error
	}{
		{"before activation", "s1", nonce, t0, ErrSessionState},
		{"activate", "", nil, t0, nil},
		{"unknown session", "nope", nonce, t0, ErrNoSession},
		{"wrong nonce", "s1", []byte("n2"), t0, ErrNonceMismatch},
		{"empty nonce", "s1", nil, t0, ErrNonceMismatch},
		{"right nonce", "s1", nonce, t0.Add(59 * time.Second), nil},
		{"reused nonce", "s1", nonce, t0.Add(59 * time.Second), ErrNonceReused},
		{"session 2", "", nil, t0, nil},
		{"expired nonce", "s2", nonce, t0.Add(time.Minute), ErrNonceExpired},
		{"expired session", "s2", nonce, t0.Add(time.Hour), ErrNonceExpired},
	}
	for _, tt := range tests {
		switch tt.name {
		case "activate", "session 2":
			id := "s1"
			if tt.name == "session 2" {
				id = "s2"
				newSession(id)
			}
			if _, err := st.Activate(id, secret, nonce, t0.Add(time.Minute), t0); err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			continue
		}
		_, err := st.TakeNonce(tt.id, tt.nonce, tt.at)
		if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("%s: TakeNonce = %v, want %v", tt.name, err, tt.want)
		}
	}
	// A wrong activation secret ends the session.
	newSession("s3")
	if _, err := st.Activate("s3", []byte("guess"), nonce, t0.Add(time.Minute), t0); !errors.Is(err, ErrActivation) {
		t.Errorf("wrong secret = %v", err)
	}
	if _, err := st.Activate("s3", secret, nonce, t0.Add(time.Minute), t0); !errors.Is(err, ErrSessionState) {
		t.Errorf("right secret after a wrong one = %v, want ErrSessionState", err)
	}
	// Sessions expire and are pruned.
	if n, err := st.PruneSessions(t0.Add(11 * time.Minute)); err != nil || n != 3 {
		t.Errorf("PruneSessions = %d, %v; want 3", n, err)
	}
}

func TestRegisterEKRules(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a, b, c := newTPM(t), newTPM(t), newTPM(t)
	reg := func(name string, tpm *fakeTPM) error {
		return e.hub.RegisterEK(ctx, operator, name, tpm.ekHash())
	}
	steps := []struct {
		what string
		do   func() error
		want error
	}{
		{"register a for w-1", func() error { return reg("w-1", a) }, nil},
		{"again: no change", func() error { return reg("w-1", a) }, nil},
		{"a for w-2: bound to w-1", func() error { return reg("w-2", a) }, ErrState},
		{"b replaces a while w-1 is pending", func() error { return reg("w-1", b) }, nil},
		{"a is free again", func() error { return reg("w-2", a) }, nil},
		{"c for any one node: a name is required", func() error { return reg("", c) }, ErrInvalid},
		{"c for the master", func() error { return reg("master", c) }, nil},
		{"malformed hash", func() error { return e.hub.RegisterEK(ctx, operator, "w-1", "ABC") }, ErrInvalid},
		{"malformed name", func() error { return reg("W_1", c) }, ErrInvalid},
	}
	for _, s := range steps {
		if err := s.do(); !errors.Is(err, s.want) || (s.want == nil) != (err == nil) {
			t.Fatalf("%s: %v, want %v", s.what, err, s.want)
		}
	}
	w1, _ := e.store.Node("w-1")
	if w1.State != StatePending || w1.EKHash != b.ekHash() {
		t.Errorf("w-1 %+v, want pending with EK b", w1)
	}
	if _, err := e.store.EK(a.ekHash()); err != nil {
		t.Errorf("EK a: %v", err)
	}
	// The registration is the binding the enrollment keeps.
	n := newNode(t, "master", "master")
	n.tpm = c
	e.mustEnroll(n)
	rec, err := e.store.EK(c.ekHash())
	if err != nil || rec.Name != "master" || !rec.Registered {
		t.Errorf("EK c after enrolling %+v, %v", rec, err)
	}
	// An enrolled node keeps its EK until replaced.
	if err := reg("master", newTPM(t)); !errors.Is(err, ErrState) {
		t.Errorf("another EK for an enrolled node = %v, want ErrState", err)
	}
}

func TestAuditChainTamper(t *testing.T) {
	tamper := []struct {
		name string
		edit func(b *bolt.Bucket) error
		want string
	}{
		{"changed detail", func(b *bolt.Bucket) error {
			var e AuditEntry
			json.Unmarshal(b.Get(seqKey(2)), &e)
			e.Detail = "nothing happened"
			raw, _ := json.Marshal(e)
			return b.Put(seqKey(2), raw)
		}, "entry 2 was changed"},
		{"deleted entry", func(b *bolt.Bucket) error { return b.Delete(seqKey(3)) }, "where entry 3 should be"},
		{"rehashed entry", func(b *bolt.Bucket) error {
			// A forger who recomputes the changed entry's hash breaks the next link.
			var e AuditEntry
			json.Unmarshal(b.Get(seqKey(2)), &e)
			e.Actor = "mallory (admin)"
			e.Hash, _ = entryHash(e)
			raw, _ := json.Marshal(e)
			return b.Put(seqKey(2), raw)
		}, "entry 3: prev"},
	}
	for _, tt := range tamper {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			for _, name := range []string{"w-1", "w-2", "w-3", "master"} {
				e.register(newNode(t, name, "worker"))
			}
			if _, err := e.store.VerifyAuditChain(); err != nil {
				t.Fatal(err)
			}
			e.store.Close()
			db, err := bolt.Open(e.path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(func(tx *bolt.Tx) error { return tt.edit(tx.Bucket(bucketAudit)) }); err != nil {
				t.Fatal(err)
			}
			db.Close()
			st, err := Open(e.path)
			if err != nil {
				t.Fatal(err)
			}
			e.store = st
			_, err = st.VerifyAuditChain()
			if !errors.Is(err, ErrAuditChain) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("VerifyAuditChain = %v, want ErrAuditChain with %q", err, tt.want)
			}
		})
	}
}

func TestAuditPaging(t *testing.T) {
	e := newEnv(t)
	for i := range 5 {
		if err := e.store.Record(AuditEntry{Time: t0, Actor: "test", Action: "poke", Target: string(rune('a' + i)), Outcome: OutcomeOK}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := e.store.Audit(2, 2)
	if err != nil || len(got) != 2 || got[0].Seq != 2 || got[1].Seq != 3 || got[0].Target != "b" {
		t.Errorf("Audit(2, 2) = %+v, %v", got, err)
	}
	got, _ = e.store.Audit(5, 10)
	if len(got) != 1 || got[0].Prev == genesis {
		t.Errorf("Audit(5, 10) = %+v", got)
	}
	if got, _ := e.store.Audit(1, 0); len(got) != 5 || got[0].Prev != genesis {
		t.Errorf("Audit(1, 0) = %d entries", len(got))
	}
	// Details quoting what a node sent are bounded.
	if err := e.store.Record(AuditEntry{Actor: "node:?", Action: "enroll.begin", Detail: strings.Repeat("x", 1<<20)}); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.store.Audit(6, 1); len(got) != 1 || len(got[0].Detail) > 5000 || !strings.Contains(got[0].Detail, "1048576 bytes") {
		t.Errorf("a 1 MiB detail was stored as %d bytes", len(got[0].Detail))
	}
}

package hub

import (
	"context"
	"crypto/x509/pkix"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubedos/kubedos/internal/pki"
)

func TestEnrollGood(t *testing.T) {
	e := newEnv(t)
	n := newNode(t, "w-1", "worker")
	e.register(n)
	got := e.mustEnroll(n)

	peer, err := e.ca.Authenticate(got.Cert, t0, e.hub.Revocations())
	if err != nil {
		t.Fatalf("the issued certificate does not authenticate: %v", err)
	}
	if peer.Name != "w-1" || peer.Role != pki.RoleNode || peer.NodeRole != "worker" {
		t.Errorf("peer %+v", peer)
	}
	if !got.Cert.NotAfter.Equal(t0.Add(6 * time.Hour)) {
		t.Errorf("NotAfter %s, want the configured 6h lifetime", got.Cert.NotAfter)
	}
	stored, err := e.store.Node("w-1")
	if err != nil {
		t.Fatal(err)
	}
	want := Node{Name: "w-1", Role: "worker", State: StateEnrolled, EKHash: n.tpm.ekHash(), AKHash: hashHex(n.tpm.ak),
		BuildID: "build-worker", CertSerial: pki.SerialString(got.Cert.SerialNumber)}
	if stored.Name != want.Name || stored.Role != want.Role || stored.State != want.State || stored.EKHash != want.EKHash ||
		stored.AKHash != want.AKHash || stored.BuildID != want.BuildID || stored.CertSerial != want.CertSerial ||
		!stored.EnrolledAt.Equal(t0) || !stored.CertNotAfter.Equal(got.Cert.NotAfter) || stored.Reason != nil || len(stored.Certs) != 1 {
		t.Errorf("stored node\n got %+v\nwant %+v", stored, want)
	}
	if string(got.CAPEM) != string(e.ca.CertPEM()) {
		t.Error("Enrolled.CAPEM is not the cluster CA")
	}
	entries, err := e.store.Audit(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	var trail []string
	for _, a := range entries {
		trail = append(trail, a.Actor+" "+a.Action+" "+a.Target+" "+a.Outcome)
	}
	wantTrail := []string{
		"olga (operator) ek.register w-1 ok",
		"node:w-1 enroll.begin w-1 ok",
		"node:w-1 enroll.activate w-1 ok",
		"node:w-1 enroll w-1 ok",
	}
	if !slices.Equal(trail, wantTrail) {
		t.Errorf("audit trail\n got %q\nwant %q", trail, wantTrail)
	}
	if last := entries[len(entries)-1]; !strings.Contains(last.Detail, want.CertSerial) || !strings.Contains(last.Detail, "registered") {
		t.Errorf("enroll audit detail %q lacks the serial or the admission", last.Detail)
	}
}

// Each way enrollment must fail, with its own reason; failures after the node
// proved its TPM quarantine it, earlier ones only refuse.
func TestEnrollRefusals(t *testing.T) {
	type setup struct {
		e *env
		n *node
		s steps
	}
	tests := []struct {
		name    string
		prepare func(t *testing.T, x *setup)
		want    error  // sentinel
		check   string // Reason.Check
		detail  string // in the reason
		quar    bool   // quarantined
	}{
		{name: "wrong nonce", want: ErrNonceMismatch, check: CheckNonce, prepare: func(t *testing.T, x *setup) {
			x.s.request = func(r *EnrollRequest) { r.Nonce = []byte("not the nonce, but 32 bytes long") }
		}},
		{name: "expired nonce", want: ErrNonceExpired, check: CheckNonce, detail: "expired", prepare: func(t *testing.T, x *setup) {
			x.s.beforeEnroll = func() { x.e.clock.Advance(DefaultNonceTTL + time.Second) }
		}},
		{name: "AK not on the EK's TPM", want: ErrActivation, check: CheckAKBinding, prepare: func(t *testing.T, x *setup) {
			other := newTPM(t)
			x.s.activate = func(_ *node, ch Challenge) []byte { return other.activate(ch) }
		}},
		{name: "AK not a TPM key", want: ErrActivation, check: CheckAKBinding, detail: "restricted", prepare: func(t *testing.T, x *setup) {
			x.n.tpm.ak = []byte("software key")
		}},
		{name: "quote signed by another AK", want: ErrEvidence, check: CheckQuoteSignature, quar: true, prepare: func(t *testing.T, x *setup) {
			x.s.request = func(r *EnrollRequest) { r.Evidence.Signature = quoteSig([]byte("ak:other"), r.Evidence.Quote) }
		}},
		{name: "quote over another nonce", want: ErrEvidence, check: CheckNonce, quar: true, prepare: func(t *testing.T, x *setup) {
			x.s.request = func(r *EnrollRequest) {
				r.Evidence = x.n.tpm.quote([]byte("stale"), x.n.pcrs, x.n.log)
			}
		}},
		{name: "event log does not replay", want: ErrEvidence, check: CheckEventLog, quar: true, prepare: func(t *testing.T, x *setup) {
			x.n.log = "edited"
		}},
		{name: "PCR 11 of another UKI", want: ErrEvidence, check: CheckPCRPolicy, detail: "PCR 11 value", quar: true, prepare: func(t *testing.T, x *setup) {
			x.n.pcrs[11] = digest("another cmdline")
		}},
		{name: "PCR 7 with Secure Boot off", want: ErrEvidence, check: CheckSecureBoot, quar: true, prepare: func(t *testing.T, x *setup) {
			x.n.pcrs[7] = digest("sb-off")
		}},
		{name: "another build than the role must run", want: ErrEvidence, check: CheckBuild, detail: `reports "build-old"`, quar: true, prepare: func(t *testing.T, x *setup) {
			x.n.buildID = "build-old"
		}},
		{name: "unknown EK under the registered policy", want: ErrUnknownEK, check: CheckEKPolicy, detail: "is not registered", prepare: func(t *testing.T, x *setup) {
			x.n = newNode(t, "w-2", "worker") // only w-1's TPM is registered
		}},
		{name: "clone of an enrolled name", want: ErrClone, check: CheckClone, prepare: func(t *testing.T, x *setup) {
			x.e.mustEnroll(x.n)
			x.n.tpm = newTPM(t)
		}},
		{name: "name and role not in the spec", want: ErrPolicy, check: CheckPolicy, prepare: func(t *testing.T, x *setup) {
			x.n.role = "master"
		}},
		{name: "malformed name", want: ErrInvalid, check: CheckRequest, prepare: func(t *testing.T, x *setup) {
			x.n.name = "W 1\n"
		}},
		{name: "CSR asking for another SAN", want: ErrCSR, check: CheckCSR, detail: "DNS SAN", prepare: func(t *testing.T, x *setup) {
			x.n.csr.DNSNames = []string{"w-1", "master"}
		}},
		{name: "CSR asking to be admin", want: ErrCSR, check: CheckCSR, prepare: func(t *testing.T, x *setup) {
			x.n.csr.Subject = pkix.Name{Organization: []string{"kubedos:admin"}}
		}},
		{name: "unknown session", want: ErrNoSession, check: CheckSession, prepare: func(t *testing.T, x *setup) {
			x.s.request = func(r *EnrollRequest) { r.Session = "0123" }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := &setup{e: newEnv(t), n: newNode(t, "w-1", "worker")}
			x.e.register(x.n)
			tt.prepare(t, x)
			before, _ := x.e.store.Node(x.n.name)
			_, err := enroll(context.Background(), t, x.e.hub, x.n, x.s)
			if !errors.Is(err, tt.want) || !errors.Is(err, ErrRefused) {
				t.Fatalf("enroll = %v, want %v", err, tt.want)
			}
			var r *Refusal
			if !errors.As(err, &r) {
				t.Fatalf("%T is not a *Refusal", err)
			}
			if r.Reason.Check != tt.check || r.Quarantined != tt.quar || !strings.Contains(r.Reason.Detail, tt.detail) {
				t.Errorf("refusal %+v, want check %q quarantined %v detail containing %q", r, tt.check, tt.quar, tt.detail)
			}
			after, _ := x.e.store.Node(x.n.name)
			if tt.quar {
				if after.State != StateQuarantined || after.Reason == nil || after.Reason.Check != tt.check || after.CertSerial != "" {
					t.Errorf("node after a quarantine: %+v", after)
				}
				if after.EKHash != x.n.tpm.ekHash() || after.BuildID != x.n.buildID {
					t.Errorf("quarantine record lacks the EK or claimed build: %+v", after)
				}
			} else if after.State != before.State || after.CertSerial != before.CertSerial {
				t.Errorf("a refusal changed the node: before %+v after %+v", before, after)
			}
			a := x.e.lastAudit()
			wantOut := OutcomeRefused
			if tt.quar {
				wantOut = OutcomeQuarantined
			}
			if a.Outcome != wantOut || !strings.Contains(a.Detail, tt.check) {
				t.Errorf("last audit entry %+v, want outcome %s naming %s", a, wantOut, tt.check)
			}
		})
	}
}

func TestEnrollNonceSingleUse(t *testing.T) {
	e := newEnv(t)
	n := newNode(t, "w-1", "worker")
	e.register(n)
	ctx := context.Background()
	var req EnrollRequest
	if _, err := enroll(ctx, t, e.hub, n, steps{request: func(r *EnrollRequest) { req = *r }}); err != nil {
		t.Fatal(err)
	}
	// The same request again: the nonce was spent.
	if _, err := e.hub.Enroll(ctx, req); !errors.Is(err, ErrNonceReused) {
		t.Fatalf("replayed enrollment = %v, want ErrNonceReused", err)
	}
	// A wrong nonce leaves the session usable with the right one.
	begun, err := e.hub.BeginEnrollment(ctx, BeginRequest{Name: n.name, Role: n.role, Identity: n.tpm.identity()})
	if err != nil {
		t.Fatal(err)
	}
	nonce, err := e.hub.CompleteActivation(ctx, begun.Session, n.tpm.activate(begun.Challenge))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.hub.CompleteActivation(ctx, begun.Session, n.tpm.activate(begun.Challenge)); !errors.Is(err, ErrSessionState) {
		t.Errorf("second activation = %v, want ErrSessionState", err)
	}
	req = EnrollRequest{Session: begun.Session, Nonce: []byte("guess"), Evidence: n.tpm.quote(nonce.Value, n.pcrs, n.log), BuildID: n.buildID, CSR: n.csrDER(t)}
	if _, err := e.hub.Enroll(ctx, req); !errors.Is(err, ErrNonceMismatch) {
		t.Fatalf("wrong nonce = %v", err)
	}
	req.Nonce = nonce.Value
	if _, err := e.hub.Enroll(ctx, req); err != nil {
		t.Fatalf("right nonce after a wrong one: %v", err)
	}
}

// The hub's own failure (the verifier cannot use its inputs) blames no node.
func TestEnrollHubError(t *testing.T) {
	e := newEnv(t)
	n := newNode(t, "w-1", "worker")
	e.register(n)
	n.log = "hub-error"
	_, err := enroll(context.Background(), t, e.hub, n, steps{})
	if err == nil || errors.Is(err, ErrRefused) {
		t.Fatalf("enroll = %v, want a hub error, not a refusal", err)
	}
	got, _ := e.store.Node("w-1")
	if got.State != StatePending {
		t.Errorf("node %s after a hub error, want pending", got.State)
	}
	if a := e.lastAudit(); a.Outcome != OutcomeFailed {
		t.Errorf("audit %+v, want failed", a)
	}
}

func TestRevokedCertificate(t *testing.T) {
	e := newEnv(t)
	n := newNode(t, "w-1", "worker")
	e.register(n)
	got := e.mustEnroll(n)
	ctx := context.Background()
	peer, err := e.ca.Authenticate(got.Cert, t0, e.hub.Revocations())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.hub.Revoke(ctx, operator, "w-1", "disk stolen"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ca.Authenticate(got.Cert, t0, e.hub.Revocations()); !errors.Is(err, pki.ErrRevoked) {
		t.Errorf("revoked certificate authenticates: %v", err)
	}
	if _, err := e.hub.BeginRenewal(ctx, peer); !errors.Is(err, ErrNodeRevoked) {
		t.Errorf("renewal of a revoked node = %v, want ErrNodeRevoked", err)
	}
	if _, err := enroll(ctx, t, e.hub, n, steps{}); !errors.Is(err, ErrNodeRevoked) {
		t.Errorf("re-enrollment of a revoked node = %v, want ErrNodeRevoked", err)
	}
	// The revocation outlives a restart.
	e.restart()
	if _, err := e.ca.Authenticate(got.Cert, t0, e.hub.Revocations()); !errors.Is(err, pki.ErrRevoked) {
		t.Errorf("after a restart the revoked certificate authenticates: %v", err)
	}
	rev, err := e.store.Revoked()
	if err != nil || len(rev) != 1 || rev[0].Serial != peer.Serial || rev[0].Node != "w-1" {
		t.Errorf("revoked bucket %+v, %v", rev, err)
	}
	stored, _ := e.store.Node("w-1")
	if stored.State != StateRevoked || stored.Reason == nil || stored.Reason.Detail != "disk stolen" || stored.Reason.By != "olga (operator)" {
		t.Errorf("revoked node %+v", stored)
	}
}

func TestQuarantinedUntilReplaced(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	n := newNode(t, "w-1", "worker")
	e.register(n)
	n.pcrs[11] = digest("tampered UKI")
	if _, err := enroll(ctx, t, e.hub, n, steps{}); !errors.Is(err, ErrEvidence) {
		t.Fatalf("enroll = %v, want quarantine", err)
	}
	n.pcrs = goodPCRs("worker")
	if _, err := enroll(ctx, t, e.hub, n, steps{}); !errors.Is(err, ErrQuarantined) {
		t.Errorf("same TPM, good PCRs = %v, want ErrQuarantined", err)
	}
	fresh := newNode(t, "w-1", "worker")
	if err := e.hub.RegisterEK(ctx, operator, "w-1", fresh.tpm.ekHash()); !errors.Is(err, ErrState) {
		t.Errorf("registering another EK for a quarantined node = %v, want ErrState", err)
	}
	if err := e.hub.Replace(ctx, operator, "w-1", "destroyed VM 201"); err != nil {
		t.Fatal(err)
	}
	if _, err := enroll(ctx, t, e.hub, n, steps{}); !errors.Is(err, ErrRetiredEK) {
		t.Errorf("old TPM after replace = %v, want ErrRetiredEK", err)
	}
	e.register(fresh)
	got := e.mustEnroll(fresh)
	stored, _ := e.store.Node("w-1")
	if stored.State != StateEnrolled || stored.EKHash != fresh.tpm.ekHash() || stored.CertSerial != pki.SerialString(got.Cert.SerialNumber) {
		t.Errorf("replacement node %+v", stored)
	}
	if len(stored.History) != 1 || stored.History[0].EKHash != n.tpm.ekHash() || stored.History[0].State != StateQuarantined ||
		stored.History[0].Reason == nil || stored.History[0].Reason.Check != CheckPCRPolicy {
		t.Errorf("history %+v", stored.History)
	}
}

func TestRenew(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	n := newNode(t, "w-1", "worker")
	e.register(n)
	first := e.mustEnroll(n)
	peer, err := e.ca.Authenticate(first.Cert, t0, e.hub.Revocations())
	if err != nil {
		t.Fatal(err)
	}
	renew := func(p pki.Peer, pcrs map[int]string) (*Enrolled, error) {
		nonce, err := e.hub.BeginRenewal(ctx, p)
		if err != nil {
			return nil, err
		}
		q := n.pcrs
		for i, s := range pcrs {
			q = goodPCRs("worker")
			q[i] = digest(s)
		}
		return e.hub.Renew(ctx, p, EnrollRequest{Session: nonce.Session, Nonce: nonce.Value,
			Evidence: n.tpm.quote(nonce.Value, q, "log-ok"), BuildID: n.buildID, CSR: n.csrDER(t)})
	}
	e.clock.Advance(5 * time.Hour)
	second, err := renew(peer, nil)
	if err != nil {
		t.Fatalf("renew: %v", err)
	}
	if second.Cert.SerialNumber.Cmp(first.Cert.SerialNumber) == 0 || !second.Cert.NotAfter.Equal(t0.Add(11*time.Hour)) {
		t.Errorf("renewed certificate serial %s until %s", second.Cert.SerialNumber, second.Cert.NotAfter)
	}
	stored, _ := e.store.Node("w-1")
	if len(stored.Certs) != 2 || !stored.EnrolledAt.Equal(t0) || stored.CertSerial != pki.SerialString(second.Cert.SerialNumber) {
		t.Errorf("after renewal %+v", stored)
	}
	if a := e.lastAudit(); a.Action != ActionRenew || a.Outcome != OutcomeOK {
		t.Errorf("audit %+v", a)
	}

	// Only the node itself renews, and only nodes do.
	other := pki.Peer{Name: "w-2", Role: pki.RoleNode, NodeRole: "worker"}
	nonce, err := e.hub.BeginRenewal(ctx, peer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.hub.Renew(ctx, other, EnrollRequest{Session: nonce.Session, Nonce: nonce.Value}); !errors.Is(err, ErrForbidden) {
		t.Errorf("renewal by another node = %v, want ErrForbidden", err)
	}
	if _, err := e.hub.BeginRenewal(ctx, admin); !errors.Is(err, ErrForbidden) {
		t.Errorf("renewal by an admin = %v, want ErrForbidden", err)
	}
	if _, err := e.hub.Enroll(ctx, EnrollRequest{Session: nonce.Session, Nonce: nonce.Value}); !errors.Is(err, ErrSessionState) {
		t.Errorf("Enroll with a renewal session = %v, want ErrSessionState", err)
	}

	// A renewal quote that fails quarantines the node and revokes both
	// certificates at once.
	if _, err := renew(peer, map[int]string{4: "another boot loader"}); !errors.Is(err, ErrEvidence) {
		t.Fatalf("bad renewal = %v, want ErrEvidence", err)
	}
	for _, c := range []*Enrolled{first, second} {
		if _, err := e.ca.Authenticate(c.Cert, e.clock.Now(), e.hub.Revocations()); !errors.Is(err, pki.ErrRevoked) {
			t.Errorf("certificate %s after quarantine: %v, want revoked", c.Cert.SerialNumber, err)
		}
	}
	stored, _ = e.store.Node("w-1")
	if stored.State != StateQuarantined || stored.Reason.Check != CheckPCRPolicy || len(stored.Reason.Mismatches) != 1 || stored.Reason.Mismatches[0].PCR != 4 {
		t.Errorf("after a failed renewal %+v", stored)
	}
}

func TestAuthorization(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	n := newNode(t, "w-1", "worker")
	e.register(n)
	e.mustEnroll(n)
	nodePeer := pki.Peer{Name: "w-1", Role: pki.RoleNode, NodeRole: "worker"}
	tests := []struct {
		name string
		do   func(p pki.Peer) error
		who  map[pki.Role]bool
	}{
		{"list", func(p pki.Peer) error { _, err := e.hub.ListNodes(ctx, p); return err },
			map[pki.Role]bool{pki.RoleAdmin: true, pki.RoleOperator: true, pki.RoleReader: true}},
		{"get", func(p pki.Peer) error { _, err := e.hub.GetNode(ctx, p, "w-1"); return err },
			map[pki.Role]bool{pki.RoleAdmin: true, pki.RoleOperator: true, pki.RoleReader: true}},
		{"audit", func(p pki.Peer) error { _, err := e.hub.Audit(ctx, p, 1, 10); return err },
			map[pki.Role]bool{pki.RoleAdmin: true, pki.RoleOperator: true, pki.RoleReader: true}},
		{"register", func(p pki.Peer) error { return e.hub.RegisterEK(ctx, p, "w-2", strings.Repeat("ab", 32)) },
			map[pki.Role]bool{pki.RoleAdmin: true, pki.RoleOperator: true}},
		{"fence", func(p pki.Peer) error { return e.hub.Fence(ctx, p, "w-1", "drill") },
			map[pki.Role]bool{pki.RoleAdmin: true, pki.RoleOperator: true}},
	}
	for _, tt := range tests {
		for _, p := range []pki.Peer{reader, nodePeer, operator, admin} {
			err := tt.do(p)
			if allowed := tt.who[p.Role]; allowed != (err == nil) {
				t.Errorf("%s by %s: %v (allowed %v)", tt.name, p.Actor(), err, allowed)
			}
			if err != nil {
				if !errors.Is(err, ErrForbidden) {
					t.Errorf("%s by %s: %v, want ErrForbidden", tt.name, p.Actor(), err)
				}
				if a := e.lastAudit(); a.Outcome != OutcomeDenied || a.Actor != p.Actor() {
					t.Errorf("denial not audited: %+v", a)
				}
			}
		}
	}
}

func TestEnrollmentWindow(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	if _, err := e.hub.OpenWindow(ctx, operator, time.Hour); !errors.Is(err, ErrState) {
		t.Errorf("window under a registered-only policy = %v, want ErrState", err)
	}
	e.allowW = true
	e.newHub()
	if _, err := e.hub.OpenWindow(ctx, operator, 48*time.Hour); !errors.Is(err, ErrInvalid) {
		t.Errorf("48h window = %v, want ErrInvalid", err)
	}
	if _, err := e.hub.OpenWindow(ctx, reader, time.Hour); !errors.Is(err, ErrForbidden) {
		t.Errorf("window by a reader = %v, want ErrForbidden", err)
	}
	w, err := e.hub.OpenWindow(ctx, operator, 30*time.Minute)
	if err != nil || !w.Until.Equal(t0.Add(30*time.Minute)) {
		t.Fatalf("OpenWindow = %+v, %v", w, err)
	}
	n := newNode(t, "w-1", "worker")
	got := e.mustEnroll(n) // unregistered EK, admitted by the window
	if got.Node.EKHash != n.tpm.ekHash() {
		t.Errorf("node %+v", got.Node)
	}
	e.clock.Advance(31 * time.Minute)
	late := newNode(t, "w-2", "worker")
	if _, err := enroll(ctx, t, e.hub, late, steps{}); !errors.Is(err, ErrUnknownEK) {
		t.Errorf("after the window closed = %v, want ErrUnknownEK", err)
	}
	// The EK the window admitted stays this node's: it cannot be w-2.
	n.name = "w-2"
	if _, err := enroll(ctx, t, e.hub, n, steps{}); !errors.Is(err, ErrClone) {
		t.Errorf("one EK as two names = %v, want ErrClone", err)
	}
}

// An EK certificate the verifier vouches for admits the EK; one it does not
// leaves the other ways.
func TestEKCertificate(t *testing.T) {
	e := newEnv(t)
	e.ver = fakeVerifier{ekCA: []byte("good cert")}
	e.newHub()
	ctx := context.Background()
	n := newNode(t, "w-1", "worker")
	id := n.tpm.identity()
	id.EKCertificate = []byte("good cert")
	if _, err := e.hub.BeginEnrollment(ctx, BeginRequest{Name: "w-1", Role: "worker", Identity: id}); err != nil {
		t.Errorf("vouched EK: %v", err)
	}
	id.EKCertificate = []byte("self-made cert")
	_, err := e.hub.BeginEnrollment(ctx, BeginRequest{Name: "w-2", Role: "worker", Identity: id})
	if !errors.Is(err, ErrUnknownEK) || !strings.Contains(err.Error(), "does not chain") {
		t.Errorf("EK certificate from another CA = %v, want ErrUnknownEK saying why", err)
	}
}

package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/attest"
	"github.com/kubedos/kubedos/internal/durable"
	"github.com/kubedos/kubedos/internal/pki"
	"google.golang.org/grpc"
)

// Identity files on the state partition (/var is an overlay kept on state).
const (
	IdentityDir  = "/var/lib/kubedos/identity"
	NodeKeyFile  = "node.key"
	NodeCertFile = "node.crt"
	// AKFile is the enrolled AK, wrapped by the TPM (useless elsewhere):
	// renewals must quote with the AK the hub recorded at enrollment.
	AKFile = "ak.blob"
)

// EnrollConfig is what a node needs to enroll.
type EnrollConfig struct {
	Hub string // host:port
	// HubFile, when it exists, names the hub instead of Hub: a master that
	// took the hub over renews with itself.
	HubFile string
	CA      *x509.Certificate
	Name    string
	Role    string
	BuildID string
	// OpenProver opens the TPM with the event log (Config.OpenProver).
	OpenProver func() (*attest.Prover, error)
	StateDir   string // where the identity is written
	// link, when set, is the connection the enrolled node's periodic
	// calls share (nil: one connection a call).
	link *hubLink
}

// HubAddr is where the node's hub is now.
func (c EnrollConfig) HubAddr() string {
	if c.HubFile != "" {
		if b, err := os.ReadFile(c.HubFile); err == nil {
			if a := strings.TrimSpace(string(b)); a != "" {
				return a
			}
		}
	}
	return c.Hub
}

// Enrolled is the identity the hub issued.
type Enrolled struct {
	Certificate *x509.Certificate
	KeyFile     string
	CertFile    string
}

// Enroll runs the node side of the enrollment protocol: EK and a fresh AK,
// credential activation, a quote over the hub's nonce with the event log,
// and a CSR for a key made here. The private key never leaves the node; it
// is written 0600 only once the hub has signed its certificate.
func Enroll(ctx context.Context, cfg EnrollConfig, logf func(string, ...any)) (*Enrolled, error) {
	p, err := cfg.OpenProver()
	if err != nil {
		return nil, err
	}
	defer p.Close()
	id, err := p.Identity()
	if err != nil {
		return nil, err
	}
	logf("EK %s; connecting to hub %s", attest.EKHash(id.EKPublic), cfg.HubAddr())
	cc, err := dialHub(cfg.HubAddr(), cfg.CA, nil)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	hub := api.NewEnrollmentClient(cc)
	begun, err := hub.Begin(ctx, &api.BeginRequest{Name: cfg.Name, Role: cfg.Role, Identity: id})
	if err != nil {
		return nil, fmt.Errorf("enroll: begin: %w", err)
	}
	secret, err := p.ActivateCredential(begun.Challenge)
	if err != nil {
		return nil, err
	}
	act, err := hub.Activate(ctx, &api.ActivateRequest{Session: begun.Session, Secret: secret})
	if err != nil {
		return nil, fmt.Errorf("enroll: credential activation: %w", err)
	}
	key, res, cert, err := proveForCertificate(ctx, p, cfg, begun.Session, act.Nonce, act.PCRs, "enroll", hub.Enroll)
	if err != nil {
		return nil, err
	}
	akBlob, err := p.MarshalAK()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, err
	}
	if err := durable.WriteFile(filepath.Join(cfg.StateDir, AKFile), akBlob, 0o600); err != nil {
		return nil, err
	}
	return saveIdentity(cfg.StateDir, key, res.Certificate, cert)
}

// proveForCertificate is the step enrollment and renewal share: quote over
// the hub's nonce, a new key and CSR, send both, and check the certificate
// that comes back chains to the cluster CA.
func proveForCertificate(ctx context.Context, p *attest.Prover, cfg EnrollConfig, session string, nonce []byte, pcrs []int, what string,
	send func(context.Context, *api.EnrollRequest) (*api.EnrollResponse, error)) (*ecdsa.PrivateKey, *api.EnrollResponse, *x509.Certificate, error) {
	key, csr, ev, err := evidenceAndCSR(p, cfg.Name, nonce, pcrs)
	if err != nil {
		return nil, nil, nil, err
	}
	res, err := send(ctx, &api.EnrollRequest{Session: session, Nonce: nonce, Evidence: ev, BuildID: cfg.BuildID, CSR: csr})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	cert, err := issuedCert(res, cfg.CA)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	return key, res, cert, nil
}

// issuedCert parses the hub's certificate and checks it chains to the
// cluster CA baked into the image.
func issuedCert(res *api.EnrollResponse, ca *x509.Certificate) (*x509.Certificate, error) {
	cert, err := x509.ParseCertificate(res.Certificate)
	if err != nil {
		return nil, fmt.Errorf("hub returned a bad certificate: %w", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool(ca), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("certificate does not chain to the cluster CA: %w", err)
	}
	return cert, nil
}

// evidenceAndCSR quotes over the hub's nonce and makes a new key (which
// never leaves the node) with a CSR for the node's name.
func evidenceAndCSR(p *attest.Prover, name string, nonce []byte, pcrs []int) (*ecdsa.PrivateKey, []byte, attest.Evidence, error) {
	ev, err := p.Quote(nonce, pcrs)
	if err != nil {
		return nil, nil, attest.Evidence{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, attest.Evidence{}, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}}, key)
	if err != nil {
		return nil, nil, attest.Evidence{}, err
	}
	return key, csr, ev, nil
}

// saveIdentity writes the node's key (0600) and certificate; the certificate
// goes last, since its presence is what says the node is enrolled. A power
// cut between the two leaves the new key beside the old certificate: the
// old key is kept as node.key.prev until the certificate is written, and
// loadIdentity falls back on it, so the node always has a usable pair.
func saveIdentity(dir string, key *ecdsa.PrivateKey, certDER []byte, cert *x509.Certificate) (*Enrolled, error) {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	out := &Enrolled{Certificate: cert, KeyFile: filepath.Join(dir, NodeKeyFile), CertFile: filepath.Join(dir, NodeCertFile)}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	prev := out.KeyFile + PrevKeySuffix
	if old, err := os.ReadFile(out.KeyFile); err == nil {
		if err := durable.WriteFile(prev, old, 0o600); err != nil {
			return nil, err
		}
	}
	if err := durable.WriteFile(out.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, err
	}
	if err := durable.WriteFile(out.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}), 0o644); err != nil {
		return nil, err
	}
	// The pair is whole again: the old key need not stay on disk.
	if err := os.Remove(prev); err == nil {
		_ = durable.SyncDir(dir)
	}
	return out, nil
}

// PrevKeySuffix names the previous node key kept while a renewal writes
// the new pair.
const PrevKeySuffix = ".prev"

// loadIdentity loads the node's key pair, falling back on the previous key
// when a cut left the new key beside the old certificate.
func loadIdentity(certFile, keyFile string) (tls.Certificate, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err == nil {
		return pair, nil
	}
	if prev, perr := tls.LoadX509KeyPair(certFile, keyFile+PrevKeySuffix); perr == nil {
		return prev, nil
	}
	return pair, err
}

// dialHub opens a TLS connection to the hub, checking its certificate
// against the cluster CA; cert, when given, authenticates this end.
// identity is the node's current key pair, as enrollment or the last
// renewal left it.
func (c EnrollConfig) identity() (tls.Certificate, error) {
	return loadIdentity(filepath.Join(c.StateDir, NodeCertFile), filepath.Join(c.StateDir, NodeKeyFile))
}

// dialHubAsNode connects to the hub where it is now (HubAddr) with the
// node's current certificate.
func dialHubAsNode(cfg EnrollConfig) (*grpc.ClientConn, error) {
	pair, err := cfg.identity()
	if err != nil {
		return nil, fmt.Errorf("node identity: %w", err)
	}
	return dialHub(cfg.HubAddr(), cfg.CA, &pair)
}

func dialHub(addr string, ca *x509.Certificate, cert *tls.Certificate) (*grpc.ClientConn, error) {
	if ca == nil {
		return nil, errors.New("no cluster CA certificate to check the hub against")
	}
	conf := pki.HubClientTLS(pool(ca))
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	cc, err := api.Dial(addr, conf)
	if err != nil {
		return nil, fmt.Errorf("hub %s: %w", addr, err)
	}
	return cc, nil
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

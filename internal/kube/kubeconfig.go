// Package kube is a small client of the Kubernetes REST API: readiness,
// reads, server-side apply and deletes of the few kinds kubedos converges,
// nodes and pods. It speaks HTTPS with a client certificate, as every
// kubedos credential is one (docs/kubernetes.md), and links no client-go:
// the main module stays lean and the kube/ module alone carries Kubernetes.
package kube

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kubedos/kubedos/internal/boundedio"
	"github.com/kubedos/kubedos/internal/errdefs"
	"gopkg.in/yaml.v3"
)

// ErrKubeconfig: a kubeconfig that does not parse, or asks for what this
// client does not do (tokens, exec plugins, skipping TLS verification).
var ErrKubeconfig = errdefs.New(errdefs.ErrInvalid, "kubeconfig")

// maxKubeconfig bounds what LoadKubeconfig reads.
const maxKubeconfig = 1 << 20

// Credentials are what a client needs: the API server's URL, the CA that
// signed its certificate, and a client certificate and key (PEM).
type Credentials struct {
	Server string
	CA     []byte
	Cert   []byte
	Key    []byte
	// ServerName overrides the name the server's certificate is checked
	// for (a kubeconfig's tls-server-name); empty: the URL's host.
	ServerName string
}

// kubeconfig is the part of the format (clientcmd's v1 Config) this
// package reads and writes. Auth methods it does not do are read only to
// refuse them.
type kubeconfig struct {
	APIVersion     string         `yaml:"apiVersion"`
	Kind           string         `yaml:"kind"`
	CurrentContext string         `yaml:"current-context"`
	Clusters       []namedCluster `yaml:"clusters"`
	Users          []namedUser    `yaml:"users"`
	Contexts       []namedContext `yaml:"contexts"`
}

type namedCluster struct {
	Name    string  `yaml:"name"`
	Cluster cluster `yaml:"cluster"`
}

type cluster struct {
	Server                   string `yaml:"server"`
	CertificateAuthority     string `yaml:"certificate-authority,omitempty"`
	CertificateAuthorityData string `yaml:"certificate-authority-data,omitempty"`
	TLSServerName            string `yaml:"tls-server-name,omitempty"`
	InsecureSkipTLSVerify    bool   `yaml:"insecure-skip-tls-verify,omitempty"`
	ProxyURL                 string `yaml:"proxy-url,omitempty"`
}

type namedUser struct {
	Name string   `yaml:"name"`
	User authInfo `yaml:"user"`
}

type authInfo struct {
	ClientCertificate     string    `yaml:"client-certificate,omitempty"`
	ClientCertificateData string    `yaml:"client-certificate-data,omitempty"`
	ClientKey             string    `yaml:"client-key,omitempty"`
	ClientKeyData         string    `yaml:"client-key-data,omitempty"`
	Token                 string    `yaml:"token,omitempty"`
	TokenFile             string    `yaml:"tokenFile,omitempty"`
	Username              string    `yaml:"username,omitempty"`
	Exec                  yaml.Node `yaml:"exec,omitempty"`
	AuthProvider          yaml.Node `yaml:"auth-provider,omitempty"`
}

type namedContext struct {
	Name    string     `yaml:"name"`
	Context contextRef `yaml:"context"`
}

type contextRef struct {
	Cluster   string `yaml:"cluster"`
	User      string `yaml:"user"`
	Namespace string `yaml:"namespace,omitempty"`
}

// LoadKubeconfig reads a kubeconfig (YAML or JSON): its current context's
// cluster and user, with certificates embedded (…-data) or in files
// (relative paths are relative to the kubeconfig's directory, as kubectl
// takes them).
func LoadKubeconfig(path string) (Credentials, error) {
	data, err := boundedio.ReadFile(path, maxKubeconfig)
	if err != nil {
		return Credentials{}, fmt.Errorf("%w %s: %w", ErrKubeconfig, path, err)
	}
	c, err := ParseKubeconfig(data, filepath.Dir(path))
	if err != nil {
		return Credentials{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseKubeconfig is LoadKubeconfig of data; dir resolves relative file
// paths.
func ParseKubeconfig(data []byte, dir string) (Credentials, error) {
	var kc kubeconfig
	if err := yaml.Unmarshal(data, &kc); err != nil {
		return Credentials{}, fmt.Errorf("%w: %w", ErrKubeconfig, err)
	}
	ctx, err := pick(kc.Contexts, kc.CurrentContext, func(c namedContext) string { return c.Name }, "context")
	if err != nil {
		return Credentials{}, err
	}
	cl, err := pick(kc.Clusters, ctx.Context.Cluster, func(c namedCluster) string { return c.Name }, "cluster")
	if err != nil {
		return Credentials{}, err
	}
	u, err := pick(kc.Users, ctx.Context.User, func(u namedUser) string { return u.Name }, "user")
	if err != nil {
		return Credentials{}, err
	}
	c, usr := cl.Cluster, u.User
	switch {
	case c.InsecureSkipTLSVerify:
		return Credentials{}, fmt.Errorf("%w: cluster %q: insecure-skip-tls-verify is not supported: the API server is always verified", ErrKubeconfig, cl.Name)
	case c.ProxyURL != "":
		return Credentials{}, fmt.Errorf("%w: cluster %q: proxy-url is not supported", ErrKubeconfig, cl.Name)
	case usr.Token != "" || usr.TokenFile != "" || usr.Username != "" || !usr.Exec.IsZero() || !usr.AuthProvider.IsZero():
		return Credentials{}, fmt.Errorf("%w: user %q: only client certificates are supported (no tokens, passwords, exec or auth plugins)", ErrKubeconfig, u.Name)
	case c.Server == "":
		return Credentials{}, fmt.Errorf("%w: cluster %q has no server", ErrKubeconfig, cl.Name)
	}
	out := Credentials{Server: c.Server, ServerName: c.TLSServerName}
	for _, f := range []struct {
		what, data, file string
		dst              *[]byte
	}{
		{"cluster " + cl.Name + " certificate-authority", c.CertificateAuthorityData, c.CertificateAuthority, &out.CA},
		{"user " + u.Name + " client-certificate", usr.ClientCertificateData, usr.ClientCertificate, &out.Cert},
		{"user " + u.Name + " client-key", usr.ClientKeyData, usr.ClientKey, &out.Key},
	} {
		if *f.dst, err = dataOrFile(f.data, f.file, dir); err != nil {
			return Credentials{}, fmt.Errorf("%w: %s: %w", ErrKubeconfig, f.what, err)
		}
	}
	return out, nil
}

// pick finds name in items; an empty name picks the only item.
func pick[T any](items []T, name string, nameOf func(T) string, what string) (T, error) {
	var zero T
	if name == "" {
		if len(items) == 1 {
			return items[0], nil
		}
		return zero, fmt.Errorf("%w: no current %s, and %d to choose from", ErrKubeconfig, what, len(items))
	}
	for _, it := range items {
		if nameOf(it) == name {
			return it, nil
		}
	}
	return zero, fmt.Errorf("%w: %s %q is not defined", ErrKubeconfig, what, clip(name))
}

func dataOrFile(data, file, dir string) ([]byte, error) {
	switch {
	case data != "" && file != "":
		return nil, fmt.Errorf("both data and a file given")
	case data != "":
		b, err := base64.StdEncoding.DecodeString(data)
		if err != nil {
			return nil, fmt.Errorf("data: %w", err)
		}
		return b, nil
	case file != "":
		if !filepath.IsAbs(file) {
			file = filepath.Join(dir, file)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		return b, nil
	}
	return nil, fmt.Errorf("missing")
}

// Kubeconfig renders a kubeconfig with everything embedded (…-data): one
// cluster, one user, one context, all called name except the user, and
// the context current. It carries the private key: write it 0600.
func Kubeconfig(name, user string, c Credentials) ([]byte, error) {
	if name == "" || user == "" || c.Server == "" || len(c.CA) == 0 || len(c.Cert) == 0 || len(c.Key) == 0 {
		return nil, fmt.Errorf("%w: a kubeconfig needs a name, a user, a server, a CA, a certificate and a key", ErrKubeconfig)
	}
	enc := base64.StdEncoding.EncodeToString
	kc := kubeconfig{APIVersion: "v1", Kind: "Config", CurrentContext: name,
		Clusters: []namedCluster{{Name: name, Cluster: cluster{Server: c.Server, CertificateAuthorityData: enc(c.CA), TLSServerName: c.ServerName}}},
		Users:    []namedUser{{Name: user, User: authInfo{ClientCertificateData: enc(c.Cert), ClientKeyData: enc(c.Key)}}},
		Contexts: []namedContext{{Name: name, Context: contextRef{Cluster: name, User: user}}},
	}
	return yaml.Marshal(&kc)
}

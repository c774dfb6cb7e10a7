// Command kubedos-probe is the acceptance probe's workload: a static HTTP
// server baked into kubelet roles as an OCI image (kubeplan.ProbeImage),
// so the acceptance gate can reach a Deployment through its Service with
// no registry. GET / answers which pod on which node served the request
// (POD_NAME and NODE_NAME, from the Downward API); GET /healthz answers ok;
// GET /dns/NAME resolves NAME through the pod's resolver (the cluster DNS
// the kubelet put in /etc/resolv.conf), so the acceptance gate can check
// cluster DNS from inside the cluster.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Addr is where the probe listens in its pod.
const Addr = ":8080"

// answer is GET /'s body.
type answer struct {
	Pod  string `json:"pod"`
	Node string `json:"node"`
	Time string `json:"time"`
}

// dnsAnswer is GET /dns/NAME's body. A failed lookup is a 200 with Error
// set: the gate reads why (through the API server's service proxy, which
// would hide a failure status's body behind its own).
type dnsAnswer struct {
	Pod         string   `json:"pod"`
	Node        string   `json:"node"`
	Name        string   `json:"name"`
	Addrs       []string `json:"addrs,omitempty"`
	Error       string   `json:"error,omitempty"`
	Nameservers []string `json:"nameservers,omitempty"`
}

// resolver is what GET /dns needs: a lookup and the nameservers it asks.
type resolver struct {
	lookup      func(ctx context.Context, name string) ([]string, error)
	nameservers func() []string
}

// maxName bounds a DNS name (RFC 1035: 253 characters written out).
const maxName = 253

// lookupTimeout bounds one lookup, under the gate's call timeout.
const lookupTimeout = 5 * time.Second

// validName: lower-case letters, digits, '-' and '.', a name the cluster
// DNS could hold; anything else is refused before it reaches a resolver or
// an answer.
func validName(n string) bool {
	if n == "" || len(n) > maxName {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(n, "."), ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func handler(pod, node string, now func() time.Time, r resolver) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /dns/{name}", func(w http.ResponseWriter, req *http.Request) {
		name := req.PathValue("name")
		if !validName(name) {
			http.Error(w, "not a DNS name (lower-case letters, digits, '-' and '.', at most 253)", http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(req.Context(), lookupTimeout)
		defer cancel()
		a := dnsAnswer{Pod: pod, Node: node, Name: name, Nameservers: r.nameservers()}
		addrs, err := r.lookup(ctx, name)
		if err != nil {
			a.Error = err.Error()
		}
		a.Addrs = addrs
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(a)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(answer{Pod: pod, Node: node, Time: now().UTC().Format(time.RFC3339Nano)})
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// nameservers are the first few nameserver lines of a resolv.conf: what
// the pod's lookups ask (Go's own resolver reads the same file).
func nameservers(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return []string{"(" + path + ": " + err.Error() + ")"}
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "nameserver" && len(out) < 3 {
			out = append(out, f[1])
		}
	}
	return out
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r := resolver{lookup: net.DefaultResolver.LookupHost, nameservers: func() []string { return nameservers("/etc/resolv.conf") }}
	srv := &http.Server{Addr: Addr, Handler: handler(os.Getenv("POD_NAME"), os.Getenv("NODE_NAME"), time.Now, r),
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		MaxHeaderBytes: 8 << 10}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		fmt.Fprintln(os.Stderr, "kubedos-probe:", err)
		os.Exit(1)
	case <-ctx.Done():
	}
	// A pod being deleted: finish what is in flight, briefly.
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "kubedos-probe:", err)
	}
}

// Command kubedos-probe is the acceptance probe's workload: a static HTTP
// server baked into kubelet roles as an OCI image (kubeplan.ProbeImage),
// so the acceptance gate can reach a Deployment through its Service with
// no registry. GET / answers which pod on which node served the request
// (POD_NAME and NODE_NAME, from the Downward API); GET /healthz answers ok.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
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

func handler(pod, node string, now func() time.Time) http.Handler {
	mux := http.NewServeMux()
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

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := &http.Server{Addr: Addr, Handler: handler(os.Getenv("POD_NAME"), os.Getenv("NODE_NAME"), time.Now),
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

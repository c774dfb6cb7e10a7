// Package promtext is what kubedosd and the hub share to serve Prometheus
// metrics: the text format's label quoting and an HTTPS server that stops
// with its context.
package promtext

import (
	"context"
	"crypto/tls"
	"errors"
	"log"
	"net"
	"net/http"
	"strings"
	"time"
)

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// Label quotes a label value as the text format wants.
func Label(v string) string { return `"` + labelEscaper.Replace(v) + `"` }

// Bool is a gauge's value for a condition.
func Bool(ok bool) int {
	if ok {
		return 1
	}
	return 0
}

// ServeTLS serves GET /metrics with h on lis over TLS with conf until ctx
// ends, then shuts down (5 s for scrapes in flight). errorLog, if not nil,
// gets the server's own errors (failed handshakes). A stop caused by ctx is
// not an error.
func ServeTLS(ctx context.Context, lis net.Listener, conf *tls.Config, h http.HandlerFunc, errorLog *log.Logger) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", h)
	return ServeHandlerTLS(ctx, lis, conf, mux, errorLog)
}

// ServeHandlerTLS is ServeTLS for any handler (kubedosd's dashboards are
// served the same way as its metrics).
func ServeHandlerTLS(ctx context.Context, lis net.Listener, conf *tls.Config, h http.Handler, errorLog *log.Logger) error {
	srv := &http.Server{Handler: h, TLSConfig: conf, ReadHeaderTimeout: 10 * time.Second, ErrorLog: errorLog}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.ServeTLS(lis, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

package cli

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/cluster"
	"github.com/spf13/cobra"
)

func nodeMetricsCmd(g *globals) *cobra.Command {
	var c nodeAPIClient
	cmd := &cobra.Command{
		Use:   "metrics",
		Short: "Print a node's metrics (Prometheus text format): drift, health, build, certificate expiry",
		Long: fmt.Sprintf(`Fetch https://<node>:%d/metrics with the operator's certificate and print it.

kubedosd serves the same endpoint to Prometheus (any cluster certificate that
is not revoked, reader or above; configure tls_config with a reader
certificate). Every scrape checks drift and health afresh:

  kubedos_drift_items{kind}          differences at the latest check, by kind
  kubedos_drift_checks_total         drift checks since kubedosd started
  kubedos_drift_detected_total       checks that found a difference
  kubedos_health_check{check}        each health check, 1 passing
  kubedos_node_info{build,slot}      what the node booted
  kubedos_certificate_expiry_timestamp_seconds, …_renew_timestamp_seconds
  kubedos_revocations_fetched_timestamp_seconds, …_max_age_seconds
  kubedos_plane_*, kubedos_controller_*   planes and kubedosd's controllers

docs/observability.md lists them all, with the hub's and the alert rules.

--node gives the node API address; the metrics port is taken on the same host.`, api.NodeMetricsPort),
		Example: "  kubedos node metrics --node 10.20.0.10:7444 --name master --keys keys",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.checkOutput(OutputText, OutputJSON); err != nil {
				return err
			}
			addr, name, err := c.target()
			if err != nil {
				return err
			}
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return fmt.Errorf("--node %q: %w", addr, err)
			}
			conf, err := cluster.Access{Keys: c.keys, Cert: c.cert, Key: c.key}.TLS(name)
			if err != nil {
				return err
			}
			cl := &http.Client{Transport: &http.Transport{TLSClientConfig: conf}, Timeout: c.timeout}
			defer cl.CloseIdleConnections()
			url := "https://" + net.JoinHostPort(host, strconv.Itoa(api.NodeMetricsPort)) + "/metrics"
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, url, nil)
			if err != nil {
				return err
			}
			res, err := cl.Do(req)
			if err != nil {
				return fmt.Errorf("node %s: %w", name, err)
			}
			defer res.Body.Close()
			body, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
			if err != nil {
				return fmt.Errorf("node %s: %w", name, err)
			}
			if res.StatusCode != http.StatusOK {
				return fmt.Errorf("node %s: %s: %s", name, res.Status, strings.TrimSpace(string(body)))
			}
			if g.output == OutputJSON {
				samples, err := parseSamples(string(body))
				if err != nil {
					return fmt.Errorf("node %s: %w", name, err)
				}
				return g.writeJSON(samples)
			}
			_, err = g.stdout.Write(body)
			return err
		},
	}
	c.addFlags(cmd, 30*time.Second)
	return cmd
}

// sample is one line of the text format, for --output json.
type sample struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	Value  float64           `json:"value"`
}

// parseSamples reads the sample lines of the Prometheus text format that
// kubedosd writes (no timestamps; label values quoted with \\, \" and \n).
func parseSamples(text string) ([]sample, error) {
	out := []sample{}
	for i, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			return nil, fmt.Errorf("metrics line %d: no value: %q", i+1, line)
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d: %w", i+1, err)
		}
		s := sample{Name: line[:sp], Value: v}
		if b := strings.IndexByte(s.Name, '{'); b >= 0 {
			if !strings.HasSuffix(s.Name, "}") {
				return nil, fmt.Errorf("metrics line %d: unterminated labels: %q", i+1, line)
			}
			labels, err := parseLabels(s.Name[b+1 : len(s.Name)-1])
			if err != nil {
				return nil, fmt.Errorf("metrics line %d: %w", i+1, err)
			}
			s.Name, s.Labels = s.Name[:b], labels
		}
		out = append(out, s)
	}
	return out, nil
}

func parseLabels(s string) (map[string]string, error) {
	labels := map[string]string{}
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 || len(s) < eq+2 || s[eq+1] != '"' {
			return nil, fmt.Errorf("bad label in %q", s)
		}
		key, rest := s[:eq], s[eq+2:]
		var val strings.Builder
		j := 0
		for ; j < len(rest) && rest[j] != '"'; j++ {
			if rest[j] == '\\' && j+1 < len(rest) {
				j++
				if rest[j] == 'n' {
					val.WriteByte('\n')
					continue
				}
			}
			val.WriteByte(rest[j])
		}
		if j == len(rest) {
			return nil, fmt.Errorf("unterminated value of label %s", key)
		}
		labels[key] = val.String()
		s = strings.TrimPrefix(rest[j+1:], ",")
	}
	return labels, nil
}

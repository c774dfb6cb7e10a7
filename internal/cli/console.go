package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/cluster"
	"github.com/kubedos/kubedos/internal/console"
	"github.com/kubedos/kubedos/internal/dashboards"
	"github.com/kubedos/kubedos/internal/sign"
	"github.com/kubedos/kubedos/internal/spec"
	"github.com/spf13/cobra"
)

const consoleLong = `Serve the cluster's web console on this machine: an overview of the nodes by
role and state that updates itself (server-sent events); each node's
identity, full quarantine reason, PCR prediction, services and audit
entries; the builds given with --build (signed manifest, SBOM summary,
provenance, predicted PCRs); upgrades in progress (live); the convergence
plan of SPEC as a graph with each step's outcome in the hub's last run; the
hub's audit log; and the node actions: revoke, fence, replace, upgrade to a
--build, restart a service the node allows; with SPEC, an admin also rolls a
--build through the cluster's nodes in spec order, as kubedos cluster upgrade
does.

The console holds no power of its own. It calls the hub's admin API and the
nodes' APIs with the operator certificate this command is given (--keys, or
--cert and --key, as kubedos node list), through the same library calls as
kubedos node revoke|fence|replace|upgrade|restart-service and kubedos
cluster upgrade, so the hub or the node checks and audits every action under
that operator's name. It offers only what that certificate's role allows by
the hub's role table: a reader sees no actions and a forged action request
is refused (403) before it reaches the hub, which would refuse it too.

Browsers log in with the token printed at start (open the printed address
once); the token trades for a session cookie, and every action needs the
node's name typed as confirmation and a CSRF token bound to the session and
the certificate. Whoever has the token acts as the operator: keep it as you
keep the key. The console serves HTTPS with a certificate it makes at start
(its key stays in memory); compare the printed SHA-256 fingerprint with the
one the browser shows when it warns about it. No CDN, no external script:
everything is in the binary, so it works air-gapped.

The hub is found like kubedos node list: --hub, KUBEDOS_HUB, or the hub of
SPEC's cluster where cluster up left it (the master after hand-over), else
127.0.0.1:7443. A node's API is found where cluster up recorded it, else at
its spec address, else at NAME:7444. The overview polls the hub every --poll.
Builds are checked with <keys>/artifact/signing.pub when it exists.

With --prometheus URL (the prometheus node's, http://ADDR:9090 on
wg-observability), the console also serves the cluster's dashboards at
/dashboards/, behind the same login: fleet attestation, upgrades and
rollbacks, drift, planes, hub latency and Kubernetes health, drawn from
Prometheus's data; --prometheus-ca FILE trusts an https Prometheus's CA.

Fence here revokes the node at the hub and marks it to be stopped; it does
not cut the VM's power (kubedos node fence --spec SPEC NAME does). With SPEC,
revoke, fence and replace also take a worker out of Kubernetes, as the CLI
does with --spec.
Once the hub runs on the master, it serves the console there too
(https://MASTER:8443) to every operator as themselves: kubedos console login
prints a one-time link into it.
See docs/console.md.`

func newConsoleCmd(g *globals) *cobra.Command {
	var c hubClient
	var listen string
	var hosts []string
	var poll time.Duration
	var builds []string
	var outDir string
	var promURL, promCA string
	cmd := &cobra.Command{
		Use:   "console [SPEC]",
		Short: "Serve the web console (nodes, builds, upgrades, plan, audit log and node actions) as this operator",
		Long:  consoleLong,
		Example: `  kubedos console cluster.yaml
  kubedos console --hub 10.0.0.2:7443 --keys keys --cert reader.crt --key reader.key
  kubedos console cluster.yaml --listen 127.0.0.1:9443
  kubedos console cluster.yaml --build out/local/<build-id> --build <other-build-id>
  kubedos console cluster.yaml --prometheus http://10.40.3.5:9090`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.checkOutput(OutputText); err != nil {
				return err
			}
			if len(args) == 1 {
				if c.spec != "" && c.spec != args[0] {
					return fmt.Errorf("give the spec once: SPEC %q or --spec %q", args[0], c.spec)
				}
				c.spec = args[0]
			}
			name := ""
			var s *spec.ClusterSpec
			if c.spec != "" {
				var err error
				if s, err = spec.Load(c.spec); err != nil {
					return fmt.Errorf("%s: %w", c.spec, err)
				}
				name = s.Metadata.Name
			}
			access := cluster.Access{Keys: c.keys, Cert: c.cert, Key: c.key}
			conf, err := access.TLS(api.HubServerName)
			if err != nil {
				return err
			}
			cl, done, err := c.admin()
			if err != nil {
				return err
			}
			defer done()
			cc, err := access.Conn(c.addr, api.HubServerName)
			if err != nil {
				return err
			}
			defer cc.Close()
			cfg := console.Config{Hub: cl, Cert: conf.Certificates[0].Leaf, Cluster: name, HubAddr: c.addr, Poll: poll,
				Runs: api.NewRunsClient(cc), Spec: s}
			hubAddr := c.addr
			cfg.Act = func(ctx context.Context, act cluster.NodeAction) (cluster.NodeActed, error) {
				act.Spec, act.NewKube = s, newKubeClient
				return access.ActOnNode(ctx, hubAddr, act)
			}
			nodeAddr := func(name string) string { return net.JoinHostPort(name, strconv.Itoa(api.NodeAPIPort)) }
			if s != nil {
				f := clusterFlags{keys: c.keys, state: c.state}
				ccfg, err := f.load(c.spec, false, nil)
				if err != nil {
					return err
				}
				nodeAddr = cluster.New(ccfg).NodeAPIAddr
			}
			cfg.DialNode = func(name string) (*api.NodeClient, func(), error) {
				return cluster.NodeDialer{Addr: nodeAddr(name), Name: name, Access: access}.Dial()
			}
			for _, ref := range builds {
				dir, err := resolveBuild(ref, outDir)
				if err != nil {
					return err
				}
				cfg.Builds = append(cfg.Builds, dir)
			}
			if len(cfg.Builds) > 0 {
				pub, err := sign.ReadVerifyKey(filepath.Join(c.keys, sign.FileSigningPub))
				if err != nil {
					fmt.Fprintf(g.stderr, "WARNING: builds shown unchecked: %v (the hub checks a build before an upgrade regardless)\n", err)
				} else {
					cfg.ArtifactKey = pub
				}
			}
			if promURL != "" {
				cl, err := prometheusClient(promCA)
				if err != nil {
					return err
				}
				cfg.Prometheus, cfg.PrometheusClient = promURL, cl
			} else if promCA != "" {
				return fmt.Errorf("--prometheus-ca %s: give --prometheus too", promCA)
			}
			con, err := console.New(cfg)
			if err != nil {
				return err
			}
			// Fail here, not in the browser, when the hub does not answer
			// or refuses the certificate.
			if err := con.Refresh(cmd.Context()); err != nil {
				return c.explain(err)
			}
			if promURL != "" {
				checkPrometheus(cmd.Context(), g, promURL, cfg.PrometheusClient)
			}
			host, _, err := net.SplitHostPort(listen)
			if err != nil {
				return fmt.Errorf("--listen %q: %w", listen, err)
			}
			tlsConf, fp, err := console.ServerCert(append([]string{host, "localhost"}, hosts...), time.Now())
			if err != nil {
				return err
			}
			lis, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("console: listen %s: %w", listen, err)
			}
			addr := lis.Addr().String()
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				fmt.Fprintf(g.stderr, "WARNING: %s is not a loopback address: anyone who reaches it with the token acts as %s\n", listen, conf.Certificates[0].Leaf.Subject.CommonName)
			}
			fmt.Fprintf(g.stderr, "console for the hub at %s (from %s), acting as %q\n", c.addr, c.where, conf.Certificates[0].Leaf.Subject.CommonName)
			fmt.Fprintf(g.stderr, "certificate SHA-256 %s\n", fp)
			if promURL != "" {
				fmt.Fprintf(g.stderr, "dashboards at https://%s/dashboards/ from the Prometheus at %s\n", addr, promURL)
			}
			fmt.Fprintf(g.stdout, "https://%s/login?token=%s\n", addr, con.Token())
			return con.Serve(cmd.Context(), lis, tlsConf)
		},
	}
	c.addFlags(cmd)
	c.addSpecFlags(cmd, "the cluster's spec, as the SPEC argument")
	cmd.AddCommand(newConsoleLoginCmd(g))
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8443", "address to serve HTTPS on")
	cmd.Flags().StringSliceVar(&hosts, "host", nil, "extra names and addresses for the console's certificate")
	cmd.Flags().DurationVar(&poll, "poll", console.DefaultPoll, "how often the live overview asks the hub for its nodes")
	cmd.Flags().StringArrayVar(&builds, "build", nil, "a build to show and upgrade nodes to: its directory, or its build-id (or a unique prefix) under --out; repeatable")
	cmd.Flags().StringVar(&outDir, "out", "out", "where kubedos build wrote its builds (for --build BUILD-ID)")
	cmd.Flags().StringVar(&promURL, "prometheus", "", "the cluster's Prometheus (http://ADDR:9090): serve its dashboards at /dashboards/")
	cmd.Flags().StringVar(&promCA, "prometheus-ca", "", "PEM file of the CA that signed an https Prometheus's certificate")
	return cmd
}

// prometheusClient is the HTTP client the dashboards query Prometheus
// with: the system's roots, or caFile's certificates alone when given.
func prometheusClient(caFile string) (*http.Client, error) {
	if caFile == "" {
		return &http.Client{Timeout: 30 * time.Second}, nil
	}
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--prometheus-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("--prometheus-ca %s: no PEM certificate in it", caFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

// checkPrometheus warns when Prometheus does not answer: the console
// serves anyway (the dashboards show the error in each panel), but the
// operator learns it now rather than in the browser.
func checkPrometheus(ctx context.Context, g *globals, url string, cl *http.Client) {
	c, err := dashboards.NewClient(url, cl)
	if err == nil {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err = c.Query(ctx, "vector(1)", time.Now())
	}
	if err != nil {
		fmt.Fprintf(g.stderr, "WARNING: the dashboards' Prometheus does not answer: %v\n", err)
	}
}

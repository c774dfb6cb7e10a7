package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/cluster"
)

// Once the hub is on the master, cluster status (and cluster up, which
// prints the same report) says where its web console is and how to log in.
func TestClusterStatusPrintsConsole(t *testing.T) {
	if got := cluster.ConsoleURL("10.20.0.10:7443"); got != "https://10.20.0.10:8443/" {
		t.Errorf("ConsoleURL = %q", got)
	}
	if got := cluster.ConsoleURL("nohost"); got != "" {
		t.Errorf("ConsoleURL of no address = %q", got)
	}
	var out bytes.Buffer
	g := &globals{stdout: &out, stderr: &out, output: OutputText}
	rep := &cluster.Report{Cluster: "local", Hub: "10.20.0.10:7443", HubOn: "master", KeysDir: "keys", Console: "https://10.20.0.10:8443/"}
	if err := printCluster(g, rep); err != nil {
		t.Fatal(err)
	}
	if want := "console: https://10.20.0.10:8443/ (served by the hub on master; log in with your cluster certificate, or open the link kubedos console login --hub 10.20.0.10:7443 --keys keys prints"; !strings.Contains(out.String(), want) {
		t.Errorf("status lacks %q:\n%s", want, out.String())
	}
	out.Reset()
	rep.Console, rep.HubOn = "", "host"
	if err := printCluster(g, rep); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "console:") {
		t.Errorf("a console printed while the hub is on the host:\n%s", out.String())
	}
}

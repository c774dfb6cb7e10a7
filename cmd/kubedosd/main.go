// Command kubedosd is the node daemon. Today it reports the booted build,
// slot and TPM PCRs once at start (console and /run/kubedos/status.json) and
// then waits; the node API and enrollment grow from here.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/kubedos/kubedos/internal/agent"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "kubedosd: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	if len(os.Args) > 1 && os.Args[1] == "status" {
		st, err := agent.ReadStatus([]int{4, 7, 11})
		if err != nil {
			return err
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	st, err := agent.ReadStatus([]int{4, 7, 11})
	if err != nil {
		return err
	}
	line := agent.StatusLine(st)
	fmt.Println(line)
	if con, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		fmt.Fprintln(con, line)
		con.Close()
	}
	if err := os.MkdirAll("/run/kubedos", 0o755); err == nil {
		b, _ := json.MarshalIndent(st, "", "  ")
		_ = os.WriteFile("/run/kubedos/status.json", b, 0o644)
	}
	<-ctx.Done()
	return nil
}

// Command kubedos is the one CLI of the kubedos platform.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/kubedos/kubedos/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

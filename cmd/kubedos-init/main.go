// Command kubedos-init is the initrd's PID 1. It fails closed: when the
// verified root or the encrypted state cannot be opened it says why on the
// console and powers off.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/kubedos/kubedos/internal/earlyboot"
	"golang.org/x/sys/unix"
)

func main() {
	console := os.Stderr
	if f, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		console = f
	}
	err := earlyboot.Init(context.Background(), console)
	// Init only returns on failure.
	fmt.Fprintf(console, "kubedos-init: FATAL: %v\nkubedos-init: refusing to boot without a verified root and an unlocked state; powering off\n", err)
	unix.Sync()
	time.Sleep(2 * time.Second)
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

package build

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// toolGrace is how long a tool has to clean up after the build is
// cancelled before it is killed.
const toolGrace = time.Minute

// toolCommand is exec.CommandContext, but a cancelled build asks the tool
// to stop (SIGTERM) instead of killing it: mmdebstrap then unmounts the
// /proc, /sys, /dev/pts and /dev/shm it mounted in the root it was making
// (killed, it left them mounted, and its apt and dpkg running, under a
// directory the build was about to remove).
func toolCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = toolGrace
	return cmd
}

// runTool runs one of the Debian tools the build is made of, with extra
// environment, and returns its stdout. A failure names the command and
// carries the tail of its stderr, which is where these tools say why.
func runTool(ctx context.Context, env []string, name string, args ...string) ([]byte, error) {
	cmd := toolCommand(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2000 {
			msg = "…" + msg[len(msg)-2000:]
		}
		return stdout.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return stdout.Bytes(), nil
}

// runToolStdin is runTool with input on stdin.
func runToolStdin(ctx context.Context, stdin, name string, args ...string) error {
	cmd := toolCommand(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// runToolCombined returns stdout and stderr together: some tools print
// their version on stderr and exit non-zero for --help.
func runToolCombined(ctx context.Context, name string, args ...string) ([]byte, error) {
	return toolCommand(ctx, name, args...).CombinedOutput()
}

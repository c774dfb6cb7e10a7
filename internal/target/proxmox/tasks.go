package proxmox

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// TaskStatus is GET /nodes/{node}/tasks/{upid}/status.
type TaskStatus struct {
	UPID   string `json:"upid"`
	Type   string `json:"type"`
	Status string `json:"status"` // running | stopped
	// ExitStatus is "OK", "WARNINGS: n" or the error, once stopped.
	ExitStatus string `json:"exitstatus"`
}

// TaskError is a task that ended with an error.
type TaskError struct {
	UPID, Type, ExitStatus string
}

func (e *TaskError) Error() string {
	return fmt.Sprintf("proxmox task %s (%s) failed: %s", e.Type, e.UPID, e.ExitStatus)
}

// WaitTask polls the task upid until it stops; an exit status other than
// OK or warnings is a *TaskError.
func (c *Client) WaitTask(ctx context.Context, upid string) error {
	if !strings.HasPrefix(upid, "UPID:") {
		return fmt.Errorf("proxmox answered %q where a task ID (UPID:…) was expected", upid)
	}
	path := c.nodePath("tasks", url.PathEscape(upid), "status")
	for {
		var st TaskStatus
		if err := c.do(ctx, http.MethodGet, path, nil, &st); err != nil {
			return err
		}
		if st.Status == "stopped" {
			if st.ExitStatus == "OK" || strings.HasPrefix(st.ExitStatus, "WARNINGS:") {
				return nil
			}
			return &TaskError{UPID: upid, Type: st.Type, ExitStatus: st.ExitStatus}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("proxmox task %s: %w", upid, ctx.Err())
		case <-time.After(c.PollEvery):
		}
	}
}

// run sends a request that starts a task and waits for the task.
func (c *Client) run(ctx context.Context, method, path string, form url.Values) error {
	var upid string
	if err := c.do(ctx, method, path, form, &upid); err != nil {
		return err
	}
	return c.WaitTask(ctx, upid)
}

package hub

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kubedos/kubedos/internal/api"
	"github.com/kubedos/kubedos/internal/pki"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func runOf(cluster string, steps ...api.RunStep) api.RunRecord {
	return api.RunRecord{Cluster: cluster, Outcome: "converged", Steps: steps, Counts: api.RunCounts{Unchanged: len(steps)}}
}

// TestRunsKeptBoundedAndAudited: the hub keeps the last MaxRuns runs,
// newest first, cuts long strings, refuses oversized or malformed runs,
// and audits each record.
func TestRunsKeptBoundedAndAudited(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for i := 0; i < MaxRuns+3; i++ {
		if _, err := e.hub.RecordRun(ctx, operator, runOf("lab", api.RunStep{ID: "attest/w-1", Outcome: "unchanged"})); err != nil {
			t.Fatal(err)
		}
	}
	runs, err := e.hub.Runs(ctx, reader, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != MaxRuns || runs[0].Seq != MaxRuns+3 || runs[len(runs)-1].Seq != 4 {
		t.Fatalf("kept %d runs, newest %d, oldest %d; want %d, %d, 4", len(runs), runs[0].Seq, runs[len(runs)-1].Seq, MaxRuns, MaxRuns+3)
	}
	if runs[0].Actor != operator.Actor() {
		t.Errorf("actor %q, want %q", runs[0].Actor, operator.Actor())
	}
	if a := e.lastAudit(); a.Action != string(pki.ActionRecordRun) || a.Target != "lab" || !strings.Contains(a.Detail, "1 unchanged") {
		t.Errorf("audit %+v, want a converge.record line for lab", a)
	}

	long := runOf("lab", api.RunStep{ID: "converge/worker", Outcome: "changed", Diff: strings.Repeat("+x\n", 10000), Error: "\x1b[31mred\x1b[0m"})
	seq, err := e.hub.RecordRun(ctx, operator, long)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := e.hub.Runs(ctx, reader, 1)
	if s := got[0].Steps[0]; got[0].Seq != seq || len(s.Diff) > api.MaxRunDiffBytes+64 || !strings.Contains(s.Diff, "bytes in all") || strings.ContainsRune(s.Error, 0x1b) {
		t.Errorf("step kept as %d-byte diff, error %q: want it cut and printable", len(s.Diff), s.Error)
	}

	for name, bad := range map[string]api.RunRecord{
		"too many steps": runOf("lab", make([]api.RunStep, api.MaxRunSteps+1)...),
		"bad cluster":    runOf("../etc"),
		"bad outcome":    {Cluster: "lab", Outcome: "great"},
	} {
		if _, err := e.hub.RecordRun(ctx, operator, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := e.hub.RecordRun(ctx, reader, runOf("lab")); !errors.Is(err, ErrForbidden) {
		t.Errorf("reader recording: err = %v, want ErrForbidden", err)
	}
}

// TestRunsOverGRPC: an operator records, a reader lists, a reader may not
// record, and no certificate gets nothing.
func TestRunsOverGRPC(t *testing.T) {
	e := newEnv(t)
	addr := serveTLS(t, e)
	ctx := context.Background()
	op := api.NewRunsClient(dialHub(t, e, addr, clientCert(t, e, "olga", pki.RoleOperator)))
	rd := api.NewRunsClient(dialHub(t, e, addr, clientCert(t, e, "rita", pki.RoleReader)))
	r := runOf("lab", api.RunStep{ID: "attest/m", Outcome: "unchanged"})
	got, err := op.RecordRun(ctx, &r)
	if err != nil || got.Seq != 1 {
		t.Fatalf("record: %v, %+v", err, got)
	}
	list, err := rd.ListRuns(ctx, 5)
	if err != nil || len(list.Runs) != 1 || list.Runs[0].Steps[0].ID != "attest/m" {
		t.Fatalf("list: %v, %+v", err, list)
	}
	if _, err := rd.RecordRun(ctx, &r); status.Code(err) != codes.PermissionDenied {
		t.Errorf("reader recording: %v, want PermissionDenied", err)
	}
	if _, err := api.NewRunsClient(dialHub(t, e, addr, nil)).ListRuns(ctx, 1); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no certificate: %v, want Unauthenticated", err)
	}
}

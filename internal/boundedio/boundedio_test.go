package boundedio

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadAll(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    string
		limit int64
		want  string
		err   bool
	}{
		{"empty", "", 4, "", false},
		{"empty, limit 0", "", 0, "", false},
		{"under the limit", "abc", 4, "abc", false},
		{"exactly at the limit", "abcd", 4, "abcd", false},
		{"one byte over", "abcde", 4, "", true},
		{"far over", strings.Repeat("x", 1<<16), 4, "", true},
		{"one byte, limit 0", "a", 0, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadAll(strings.NewReader(tc.in), tc.limit, "the thing")
			if tc.err {
				if !errors.Is(err, ErrTooLarge) {
					t.Fatalf("err = %v, want ErrTooLarge", err)
				}
				if msg, want := err.Error(), fmt.Sprintf("the thing is larger than %d bytes", tc.limit); msg != want {
					t.Errorf("error %q, want %q", msg, want)
				}
				if got != nil {
					t.Errorf("got %q with the error", got)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// A read error is the reader's, not ErrTooLarge.
func TestReadAllReadError(t *testing.T) {
	boom := errors.New("boom")
	_, err := ReadAll(iotest.ErrReader(boom), 10, "x")
	if !errors.Is(err, boom) || errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want boom", err)
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, bytes.Repeat([]byte{7}, 9), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadFile(p, 9); err != nil || len(got) != 9 {
		t.Fatalf("at the limit: %d bytes, %v", len(got), err)
	}
	if _, err := ReadFile(p, 8); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), p) {
		t.Fatalf("over the limit: %v, want ErrTooLarge naming %s", err, p)
	}
	if _, err := ReadFile(filepath.Join(dir, "missing"), 8); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing: %v, want fs.ErrNotExist", err)
	}
}

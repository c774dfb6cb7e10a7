// Package boundedio reads input whole up to a limit, so a hostile or broken
// file cannot exhaust memory: one byte past the limit is read to tell "at
// the limit" from "over it".
package boundedio

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrTooLarge is what ReadAll's and ReadFile's error matches (errors.Is)
// when the input is over its limit; callers classify it as they need.
var ErrTooLarge = errors.New("input over its size limit")

type tooLargeError struct {
	what  string
	limit int64
}

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("%s is larger than %d bytes", e.what, e.limit)
}

func (e *tooLargeError) Is(target error) bool { return target == ErrTooLarge }

// ReadAll reads r to its end, at most limit bytes. Input over the limit is
// an error naming what and the limit (ErrTooLarge); read errors are
// returned as they are.
func ReadAll(r io.Reader, limit int64, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, &tooLargeError{what: what, limit: limit}
	}
	return b, nil
}

// ReadFile is ReadAll of the file at path, named by its path. An error
// opening it is os.Open's (it names the path, and matches fs.ErrNotExist
// when it is missing).
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadAll(f, limit, path)
}

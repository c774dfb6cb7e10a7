package hub

import (
	"fmt"
	"io"

	bolt "go.etcd.io/bbolt"
)

// Snapshot writes a consistent copy of the whole state to w, as of one read
// transaction (writers go on meanwhile), and returns its size. Handing the
// hub to a master sends it; the copy opens with Open like the original.
func (s *Store) Snapshot(w io.Writer) (int64, error) {
	var n int64
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("snapshot hub state %s: %w", s.path, err)
	}
	return n, nil
}

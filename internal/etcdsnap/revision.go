package etcdsnap

import (
	"encoding/binary"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Revision is the etcd revision a snapshot file holds, read as etcd reads
// its backend: the newest revision in the "key" bucket (keys are the
// revision, 8 bytes big-endian first), or the finished compaction's when
// later (a compaction may drop a newest tombstone). It is cheap: bbolt
// maps the file and walks one edge of the tree; the 32 bytes etcd appends
// after the pages are not read. 0 means unknown (not etcd's bbolt file):
// not an error, the digest still names the file.
func Revision(path string) (rev int64) {
	// A damaged file must not take the hub down with it.
	defer func() {
		if recover() != nil {
			rev = 0
		}
	}()
	db, err := bolt.Open(path, 0, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return 0
	}
	defer db.Close()
	_ = db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte("key")); b != nil {
			if k, _ := b.Cursor().Last(); len(k) >= 8 {
				rev = int64(binary.BigEndian.Uint64(k[:8]))
			}
		}
		if b := tx.Bucket([]byte("meta")); b != nil {
			if v := b.Get([]byte("finishedCompactRev")); len(v) >= 8 {
				rev = max(rev, int64(binary.BigEndian.Uint64(v[:8])))
			}
		}
		return nil
	})
	return max(rev, 0)
}

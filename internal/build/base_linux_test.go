package build

import (
	"os"
	"strconv"
	"syscall"
)

func linkCount(fi os.FileInfo) string {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return strconv.FormatUint(uint64(st.Nlink), 10)
	}
	return "?"
}

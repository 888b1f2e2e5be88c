package harness

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// XSKStats sums the XDP_STATISTICS of a process's AF_XDP sockets: where the
// kernel lost the frames it had for them. natd's own metric adds the RX
// drops up into one figure; the kernel-generator scenario needs them apart
// (a full RX ring means natd consumes too slowly, an empty fill ring that
// it gives frames back too slowly).
type XSKStats struct {
	Sockets    int    `json:"sockets"`
	RxDropped  uint64 `json:"rx_dropped"` // includes the fill-ring-empty drops
	RxRingFull uint64 `json:"rx_ring_full"`
	FillEmpty  uint64 `json:"rx_fill_ring_empty"`
	RxInvalid  uint64 `json:"rx_invalid_descs"`
	TxInvalid  uint64 `json:"tx_invalid_descs"`
	TxEmpty    uint64 `json:"tx_ring_empty"`
}

func (a XSKStats) sub(b XSKStats) XSKStats {
	return XSKStats{Sockets: a.Sockets, RxDropped: a.RxDropped - b.RxDropped, RxRingFull: a.RxRingFull - b.RxRingFull,
		FillEmpty: a.FillEmpty - b.FillEmpty, RxInvalid: a.RxInvalid - b.RxInvalid, TxInvalid: a.TxInvalid - b.TxInvalid,
		TxEmpty: a.TxEmpty - b.TxEmpty}
}

// readXSKStats duplicates each socket descriptor of process pid
// (pidfd_getfd, Linux 5.6; root) and asks it for XDP_STATISTICS; sockets
// of other families refuse and are skipped.
func readXSKStats(pid int) (XSKStats, error) {
	var sum XSKStats
	pfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return sum, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pfd)
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return sum, err
	}
	for _, e := range ents {
		l, err := os.Readlink(dir + "/" + e.Name())
		if err != nil || !strings.HasPrefix(l, "socket:") {
			continue
		}
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fd, err := unix.PidfdGetfd(pfd, n, 0)
		if err != nil {
			continue // closed since the listing
		}
		var s unix.XDPStatistics
		size := uint32(unsafe.Sizeof(s))
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_STATISTICS,
			uintptr(unsafe.Pointer(&s)), uintptr(unsafe.Pointer(&size)), 0)
		unix.Close(fd)
		if errno != 0 {
			continue // not an AF_XDP socket
		}
		sum.Sockets++
		sum.RxDropped += s.Rx_dropped
		sum.RxRingFull += s.Rx_ring_full
		sum.FillEmpty += s.Rx_fill_ring_empty_descs
		sum.RxInvalid += s.Rx_invalid_descs
		sum.TxInvalid += s.Tx_invalid_descs
		sum.TxEmpty += s.Tx_ring_empty_descs
	}
	if sum.Sockets == 0 {
		return sum, fmt.Errorf("process %d has no AF_XDP socket", pid)
	}
	return sum, nil
}

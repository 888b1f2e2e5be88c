package harness

import "fmt"

// Layout places the threads of one lab with N queue pairs: the
// generator's TX workers, the sink's receivers and the DUT's workers, one
// CPU each per queue pair (TX worker i, DUT worker i and receiver i serve
// queue i).
//
// On veth, receive work runs on the CPU that transmitted: the XDP program
// of dut-in (natd's and l2fwd's redirect to their AF_XDP sockets) runs in
// the softirq of the generator's TX CPU, and the sink's XDP program in the
// softirq of the DUT worker's CPU that sent the frame. nftables gets no
// XDP program: its frames enter the DUT namespace's backlog on the
// generator's CPU and RPS moves them to the DUT's CPUs. So each side's
// cores carry the other side's receive work too; the layout only keeps the
// three sides' threads apart.
type Layout struct {
	Queues int   `json:"queues"`
	GenTx  []int `json:"gen_tx_cpus"`
	GenRx  []int `json:"gen_rx_cpus"`
	DUT    []int `json:"dut_cpus"`
	// Shared reports that the DUT's workers share CPUs with the
	// generator or with each other: the rates then do not show how the
	// DUT scales.
	Shared bool   `json:"shared"`
	Note   string `json:"note"`
}

// PlanLayout places n queue pairs on a machine with cores CPUs:
//
//   - 3n+1 <= cores (n <= 5 on 16 cores): CPU 0 is left to the harness,
//     its scrapes and the system; the generator sends from CPUs 1..n, the
//     DUT runs on n+1..2n and the sink receives on 2n+1..3n;
//   - 2n+1 <= cores (n = 6 or 7 on 16 cores): the same, but the sink's
//     receivers share the generator's CPUs (receiver i with TX worker i);
//   - n = 1 on 2 or 3 cores: the generator and its receiver on CPU 0, the
//     DUT on CPU 1 (the single-queue layout of the rest of the run);
//   - otherwise every side wraps around the cores and shares them
//     (Shared): such figures say nothing about scaling.
func PlanLayout(cores, n int) (Layout, error) {
	if n < 1 || cores < 1 {
		return Layout{}, fmt.Errorf("layout: %d queues on %d CPUs", n, cores)
	}
	l := Layout{Queues: n}
	span := func(first int) []int {
		s := make([]int, n)
		for i := range s {
			s[i] = (first + i) % cores
		}
		return s
	}
	switch {
	case 3*n+1 <= cores:
		l.GenTx, l.DUT, l.GenRx = span(1), span(n+1), span(2*n+1)
		l.Note = fmt.Sprintf("each side on its own cores: generator %v, DUT %v, sink %v; CPU 0 for the harness", l.GenTx, l.DUT, l.GenRx)
	case 2*n+1 <= cores:
		l.GenTx, l.DUT = span(1), span(n+1)
		l.GenRx = l.GenTx
		l.Note = fmt.Sprintf("DUT on its own cores %v; the sink's receivers share the generator's cores %v", l.DUT, l.GenTx)
	case n == 1 && cores >= 2:
		l.GenTx, l.DUT, l.GenRx = []int{0}, []int{1}, []int{0}
		l.Note = "DUT on CPU 1; generator and sink on CPU 0 with everything else"
	default:
		l.GenTx, l.DUT, l.GenRx = span(0), span(1), span(0)
		l.Shared = true
		l.Note = fmt.Sprintf("%d queue pairs on %d CPUs: generator, DUT and sink share every core, so these figures do not show scaling", n, cores)
	}
	return l, nil
}

// cpuMask is the hexadecimal CPU mask of cpus, as rps_cpus takes it.
func cpuMask(cpus []int) string {
	var m uint64
	for _, c := range cpus {
		m |= 1 << uint(c%64)
	}
	return fmt.Sprintf("%x", m)
}

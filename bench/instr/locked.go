package main

import (
	"bufio"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Locked instructions: on amd64 an instruction with a LOCK prefix (a
// compare-and-swap, an atomic add) or an XCHG with a memory operand (Go's
// atomic store) waits for the store buffer to drain and is a full barrier.
// A new session at a million sessions spent about 2% of its time on each
// (perf: samples stood right after them; docs/engineering.md, "Locked
// instructions, the second round"), so their count per packet is printed
// beside the instructions:
//
//	new-session locked/packet=14.17
//
// Counted as the instructions are, from the same two callgrind runs: each
// run records the executions of every instruction address
// (--dump-instr=yes), and the addresses whose bytes in the test binary
// decode as locked (isLocked) are summed.

// InstrCounts reads a callgrind output file written with --dump-instr=yes
// and --compress-pos=no: the self executions of each instruction address
// (Ir). A "calls=" line is followed by the call's inclusive cost at the
// call site's address, which is not that instruction's own and is skipped.
func InstrCounts(r io.Reader) (map[uint64]uint64, error) {
	counts := map[uint64]uint64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	call := false
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "calls=") {
			call = true
			continue
		}
		if !strings.HasPrefix(line, "0x") {
			continue
		}
		f := strings.Fields(line)
		if call {
			call = false
			continue
		}
		if len(f) < 2 {
			return nil, fmt.Errorf("cost line %q: no cost", line)
		}
		addr, err := strconv.ParseUint(f[0][2:], 16, 64)
		if err != nil {
			return nil, fmt.Errorf("cost line %q: %v", line, err)
		}
		// positions: instr line, so the cost is the last field.
		n, err := strconv.ParseUint(f[len(f)-1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("cost line %q: %v", line, err)
		}
		counts[addr] += n
	}
	return counts, sc.Err()
}

// isLocked reports whether the x86-64 instruction starting at b is a
// locked one: a LOCK prefix (0xF0) among its legacy prefixes, or XCHG
// (0x86, 0x87) with a memory operand (ModRM mod not 3), which is locked
// without the prefix. XCHG of two registers is not (66 90, XCHG AX,AX, is
// Go's two-byte NOP).
func isLocked(b []byte) bool {
	i := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case 0xF0:
			return true
		case 0x66, 0x67, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65:
			continue
		}
		break
	}
	if i < len(b) && b[i]&0xF0 == 0x40 { // REX
		i++
	}
	if i+1 < len(b) && (b[i] == 0x86 || b[i] == 0x87) {
		return b[i+1]>>6 != 3
	}
	return false
}

// lockedSet returns the addresses among addrs whose instruction in the
// executable bin is locked.
func lockedSet(bin string, addrs map[uint64]uint64) (map[uint64]bool, error) {
	f, err := elf.Open(bin)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("%s: not an x86-64 executable", bin)
	}
	set := map[uint64]bool{}
	for _, s := range f.Sections {
		if s.Type != elf.SHT_PROGBITS || s.Flags&elf.SHF_EXECINSTR == 0 {
			continue
		}
		data, err := s.Data()
		if err != nil {
			return nil, err
		}
		for a := range addrs {
			if a >= s.Addr && a < s.Addr+uint64(len(data)) {
				off := a - s.Addr
				if isLocked(data[off:min(off+15, uint64(len(data)))]) {
					set[a] = true
				}
			}
		}
	}
	return set, nil
}

// lockedPerPacket is the locked instructions per packet between the
// callgrind runs of n1 and n2 packets whose output files are out1 and
// out2, of the test binary bin.
func lockedPerPacket(bin, out1, out2 string, packets float64) (float64, error) {
	read := func(name string) (map[uint64]uint64, error) {
		fh, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer fh.Close()
		return InstrCounts(fh)
	}
	c1, err := read(out1)
	if err != nil {
		return 0, err
	}
	c2, err := read(out2)
	if err != nil {
		return 0, err
	}
	locked, err := lockedSet(bin, c2)
	if err != nil {
		return 0, err
	}
	var n float64
	for a := range locked {
		n += float64(c2[a]) - float64(c1[a])
	}
	return n / packets, nil
}

package mgmttest

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/gopacket/gopacket/pcapgo"
)

// PcapngFrame is one frame of a capture as natctl capture writes it:
// Interface 0 is the inside, 1 the outside.
type PcapngFrame struct {
	Data      []byte
	Interface int
}

// ReadPcapng decodes a whole pcapng stream, failing tb when it is
// malformed.
func ReadPcapng(tb testing.TB, b []byte) []PcapngFrame {
	tb.Helper()
	r, err := pcapgo.NewNgReader(bytes.NewReader(b), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		tb.Fatalf("pcapng: %v (%d bytes)", err, len(b))
	}
	var out []PcapngFrame
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			tb.Fatalf("pcapng frame %d: %v", len(out), err)
		}
		out = append(out, PcapngFrame{Data: data, Interface: ci.InterfaceIndex})
	}
}

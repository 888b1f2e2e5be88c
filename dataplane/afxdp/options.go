package afxdp

import (
	"fmt"
	"time"

	"github.com/xnat/xnat/internal/enumtext"
)

// Backend selects the ring layer under a Port.
type Backend uint8

const (
	// Native is our own ring layer (xsk_linux.go): need_wakeup, ordered
	// index updates, clean Close, link recovery. The default; see
	// bench/afxdp/README.md for the measurement behind the choice.
	Native Backend = iota
	// Asavie wraps github.com/asavie/xdp v0.3.3 (see asavie.go for its
	// defects and how the adapter contains them).
	Asavie
)

// backends names the backends in natd.yaml and on the command lines of
// l2fwd and trafficgen.
var backends = enumtext.Table[Backend]{Kind: "backend", Names: []string{Native: "native", Asavie: "asavie"}}

func (b Backend) String() string                { return backends.String(b) }
func (b Backend) MarshalText() ([]byte, error)  { return backends.Marshal(b) }
func (b *Backend) UnmarshalText(t []byte) error { return backends.Unmarshal(t, b) }

// SharesUMEM reports whether sockets of the backend can share a UMEM
// (NewUMEM). asavie cannot: its library owns its UMEM (see asavie.go).
func (b Backend) SharesUMEM() bool { return b == Native }

// Mode is the copy mode requested at bind time.
type Mode uint8

const (
	// ModeAuto lets the kernel choose: zero-copy if the driver supports
	// it, copy otherwise. veth supports only copy mode.
	ModeAuto Mode = iota
	// ModeCopy forces XDP_COPY.
	ModeCopy
	// ModeZeroCopy forces XDP_ZEROCOPY; bind fails where the driver lacks
	// it (veth: EOPNOTSUPP).
	ModeZeroCopy
)

// Options tunes a Port. The zero value of every field means its default.
type Options struct {
	NumFrames int // UMEM frames (default 4096; power of two)
	FrameSize int // bytes per frame (default 2048; 2048 or 4096, aligned chunk mode)
	// Headroom is reserved at the start of every frame, before the
	// kernel's own XDP_PACKET_HEADROOM on RX (default 0; native only).
	Headroom           int
	FillRingSize       int // default 2048; power of two
	CompletionRingSize int // default 2048; power of two
	RxRingSize         int // default 2048; power of two
	TxRingSize         int // default 2048; power of two
	// BatchSize is the largest burst the caller will pass (default 64);
	// it sizes the scratch descriptor arrays.
	BatchSize int
	// MaxKicks bounds the sendto calls of one Flush (default 64). Copy mode
	// transmits at most 32 frames per kick.
	MaxKicks int
	Backend  Backend
	Mode     Mode
	// NoNeedWakeup binds without XDP_USE_NEED_WAKEUP, so every Flush with
	// pending frames kicks (for comparison only).
	NoNeedWakeup bool
	// Register is called after every successful bind (at New and after a
	// recovery re-creates the socket) with the socket's interface, queue
	// and fd; it should put fd into the XSKMAP of the XDP program on that
	// interface (re-attaching the program if the ifindex changed). Nil
	// means the caller registers the socket itself after New.
	Register func(ifindex, queue, fd int) error
	// RecoverInterval is the minimum time between recovery attempts while
	// the link is down (default 100ms).
	RecoverInterval time.Duration
	// UMEM, if set, is a shared UMEM (NewUMEM) to bind the socket to
	// instead of a private one of NumFrames frames: a worker's ports on
	// one UMEM transmit each other's frames without a copy. The port's
	// FrameSize and Headroom are then the UMEM's. Native backend only.
	UMEM *UMEM

	mode bindMode
}

func (o *Options) withDefaults() Options {
	r := *o
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&r.NumFrames, 4096)
	def(&r.FrameSize, 2048)
	def(&r.FillRingSize, 2048)
	def(&r.CompletionRingSize, 2048)
	def(&r.RxRingSize, 2048)
	def(&r.TxRingSize, 2048)
	def(&r.BatchSize, 64)
	def(&r.MaxKicks, 64)
	if r.RecoverInterval == 0 {
		r.RecoverInterval = 100 * time.Millisecond
	}
	switch r.Mode {
	case ModeCopy:
		r.mode = modeCopy
	case ModeZeroCopy:
		r.mode = modeZeroCopy
	default:
		r.mode = modeAuto
	}
	return r
}

func isPow2(n int) bool { return n > 0 && n&(n-1) == 0 }

// validate checks o (after defaults) and returns a clear error.
func (o *Options) validate() error {
	for _, c := range []struct {
		name string
		v    int
	}{{"NumFrames", o.NumFrames}, {"FillRingSize", o.FillRingSize}, {"CompletionRingSize", o.CompletionRingSize},
		{"RxRingSize", o.RxRingSize}, {"TxRingSize", o.TxRingSize}} {
		if !isPow2(c.v) {
			return fmt.Errorf("afxdp: %s = %d: must be a positive power of two", c.name, c.v)
		}
	}
	if o.FrameSize != 2048 && o.FrameSize != 4096 {
		return fmt.Errorf("afxdp: FrameSize = %d: aligned UMEM chunks must be 2048 or 4096 bytes", o.FrameSize)
	}
	// RX data starts after Headroom plus the kernel's 256-byte
	// XDP_PACKET_HEADROOM; leave room for a 1518-byte frame.
	if o.Headroom < 0 || o.Headroom+256+1518 > o.FrameSize {
		return fmt.Errorf("afxdp: Headroom = %d: leaves no room for a 1518-byte frame in a %d-byte frame", o.Headroom, o.FrameSize)
	}
	if o.BatchSize < 1 || o.BatchSize > o.RxRingSize || o.BatchSize > o.TxRingSize {
		return fmt.Errorf("afxdp: BatchSize = %d: must be in [1, min(RxRingSize, TxRingSize)]", o.BatchSize)
	}
	if o.MaxKicks < 1 {
		return fmt.Errorf("afxdp: MaxKicks = %d: must be positive", o.MaxKicks)
	}
	if o.FillRingSize > o.NumFrames {
		return fmt.Errorf("afxdp: FillRingSize %d > NumFrames %d: the fill ring could never be full", o.FillRingSize, o.NumFrames)
	}
	if o.Backend != Native && o.Backend != Asavie {
		return fmt.Errorf("afxdp: unknown backend %d", o.Backend)
	}
	if o.Backend == Asavie && o.Headroom != 0 {
		return fmt.Errorf("afxdp: the asavie backend does not support Headroom")
	}
	if o.Backend == Asavie && o.Mode == ModeZeroCopy {
		return fmt.Errorf("afxdp: the asavie backend cannot request zero-copy")
	}
	return nil
}

// ValidateOptions checks o as New would, after filling in defaults, so a
// configuration can be judged before any socket exists (natd
// --check-config).
func ValidateOptions(o *Options) error {
	d := o.withDefaults()
	return d.validate()
}

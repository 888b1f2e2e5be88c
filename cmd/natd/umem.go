package main

import (
	"github.com/xnat/xnat/dataplane/afxdp"
	"github.com/xnat/xnat/dataplane/nat"
)

// A worker's inside and outside sockets share one UMEM by default, so that
// a translated frame leaves through the other interface as it is, without
// being copied into the other socket's memory (dataplane/nat/zerocopy.go).
// xdp.shared_umem: false gives each socket its own UMEM again (to compare,
// or to debug); the asavie backend cannot share one.

// sharedUMEMFromFile decides xdp.shared_umem: on unless the file turns it
// off, or the backend cannot share a UMEM; asking for it with such a
// backend is an error.
func sharedUMEMFromFile(v *bool, b afxdp.Backend, ce *configErrors) bool {
	switch {
	case v == nil:
		return b.SharesUMEM()
	case *v && !b.SharesUMEM():
		ce.add("xdp.shared_umem", "the %v backend cannot share a UMEM between sockets", b)
		return false
	}
	return *v
}

// workerUMEM maps the UMEM a worker's two sockets will share, with
// xdp.frames frames for each, or returns nil (each socket maps its own)
// when sharing is off. The caller closes it once the ports have it: they
// keep it mapped while they use it. Close of a nil UMEM does nothing.
func (d *daemon) workerUMEM() (*afxdp.UMEM, error) {
	if !d.cfg.SharedUMEM {
		return nil, nil
	}
	return afxdp.NewUMEM(&d.cfg.Port, int(nat.NumSides))
}

//go:build !linux

package mgmt

import (
	"errors"
	"net"
)

func peerCred(net.Conn) (uid, gid, pid int, err error) {
	return -1, -1, -1, errors.New("peer credentials are only available on Linux")
}

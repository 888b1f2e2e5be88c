package mgmt

import (
	"errors"
	"net"

	"golang.org/x/sys/unix"
)

// peerCred returns the uid, gid and pid of the process at the other end of
// a unix socket connection (SO_PEERCRED: the credentials it had when it
// connected, so a later setuid cannot forge them).
func peerCred(c net.Conn) (uid, gid, pid int, err error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return -1, -1, -1, errors.New("not a unix socket connection")
	}
	sc, err := uc.SyscallConn()
	if err != nil {
		return -1, -1, -1, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := sc.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return -1, -1, -1, err
	}
	if credErr != nil {
		return -1, -1, -1, credErr
	}
	return int(cred.Uid), int(cred.Gid), int(cred.Pid), nil
}

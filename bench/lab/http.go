package lab

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"
)

// HTTPGet fetches http://addr/path from inside namespace ns, with accept
// as the Accept header if not empty. The connection is dialled on a thread
// in ns and then handed to the HTTP client, whose own goroutines may run
// on any thread.
func HTTPGet(ns, addr, path, accept string) (int, []byte, error) {
	var conn net.Conn
	if err := Do(ns, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", addr, 2*time.Second)
		return err
	}); err != nil {
		return 0, nil, err
	}
	used := false
	tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
		if used {
			return nil, errors.New("lab: one connection per request")
		}
		used = true
		return conn, nil
	}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		conn.Close()
		return 0, nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

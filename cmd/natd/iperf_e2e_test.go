package main

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/xnat/xnat/bench/lab"
	"github.com/xnat/xnat/bench/lab/natdlab"
	"github.com/xnat/xnat/internal/wait"
)

// iperfReceived is what the tests read of iperf3 -J's report: what the
// server received.
type iperfReceived struct {
	BitsPerSecond float64 `json:"bits_per_second"`
	Bytes         uint64  `json:"bytes"`
}

// startIperf3 runs an iperf3 server on natdlab.Server in e.Out until the
// test ends (lab.RequireTools(t, "iperf3") first). Not one-off (-1): a one-off server may tear the control
// connection down before the client has read the results.
func startIperf3(t *testing.T, e *natdlab.Env) {
	t.Helper()
	srv := lab.Command(e.Out, "iperf3", "-s", "-B", natdlab.Server.String())
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
}

// iperf3Through runs an iperf3 TCP client in e.In1 for secs seconds
// through natd to the server of startIperf3 and returns what the server
// received. The server may take a moment to listen, and a run may end
// without data on a loaded machine: the client is retried for 20 s.
func iperf3Through(t *testing.T, e *natdlab.Env, secs int) iperfReceived {
	t.Helper()
	var out string
	var err error
	var res struct {
		End struct {
			SumReceived iperfReceived `json:"sum_received"`
		} `json:"end"`
	}
	if !wait.For(20*time.Second, func() bool {
		out, err = lab.Exec(e.In1, "iperf3", "-c", natdlab.Server.String(), "-t", strconv.Itoa(secs), "-J")
		res.End.SumReceived = iperfReceived{}
		return err == nil && json.Unmarshal([]byte(out), &res) == nil && res.End.SumReceived.Bytes > 0
	}) {
		t.Fatalf("iperf3 moved no data (%v):\n%s", err, out)
	}
	return res.End.SumReceived
}

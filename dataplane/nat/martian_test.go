package nat

import "testing"

// TestMartianOctet holds martianOctet's one comparison to the ranges it
// stands for, on every octet: 0/8 ("this network", RFC 1122 section
// 3.2.1.3), 127/8 (loopback), 224/4 (multicast), 240/4 (class E) and
// 255 (limited broadcast).
func TestMartianOctet(t *testing.T) {
	for o := 0; o < 256; o++ {
		want := o == 0 || o == 127 || o >= 224
		if got := martianOctet(byte(o)); got != want {
			t.Errorf("martianOctet(%d) = %v, want %v", o, got, want)
		}
	}
}

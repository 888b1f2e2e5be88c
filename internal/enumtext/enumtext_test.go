package enumtext

import "testing"

type color uint8

var colorNames = []string{"red", "green", "blue"}

func TestRoundTripAndErrors(t *testing.T) {
	for i, n := range colorNames {
		b, err := Marshal(colorNames, "color", color(i))
		if err != nil || string(b) != n {
			t.Errorf("Marshal(%d) = %q, %v", i, b, err)
		}
		var c color
		if err := Unmarshal(colorNames, b, &c); err != nil || c != color(i) {
			t.Errorf("Unmarshal(%q) = %d, %v", b, c, err)
		}
		if s := String(colorNames, "color", color(i)); s != n {
			t.Errorf("String(%d) = %q", i, s)
		}
	}
	if _, err := Marshal(colorNames, "color", color(7)); err == nil {
		t.Error("Marshal of a value without a name succeeded")
	}
	if s := String(colorNames, "color", color(7)); s != "color(7)" {
		t.Errorf("String(7) = %q", s)
	}
	c := color(2)
	err := Unmarshal(colorNames, []byte("pink"), &c)
	if err == nil || err.Error() != `"pink" is not red, green or blue` || c != 2 {
		t.Errorf("Unmarshal(pink) = %v, left %d", err, c)
	}
	if a := Alternatives([]string{"x", "y"}); a != "x or y" {
		t.Errorf("Alternatives = %q", a)
	}
}

func TestOrSparseAndOutOfRange(t *testing.T) {
	sparse := []string{1: "one", 3: "three"}
	for v, want := range map[int]string{-1: "?", 0: "?", 1: "one", 2: "?", 3: "three", 4: "?"} {
		if got := Or(sparse, v, "?"); got != want {
			t.Errorf("Or(%d) = %q, want %q", v, got, want)
		}
	}
	if s := String(sparse, "n", uint32(2)); s != "n(2)" {
		t.Errorf("String of a gap = %q", s)
	}
}

package enumtext

import "testing"

func TestTableMatchesFunctions(t *testing.T) {
	tab := Table[color]{Kind: "color", Names: colorNames}
	for i := range 4 {
		c := color(i)
		if tab.String(c) != String(colorNames, "color", c) {
			t.Errorf("String(%d) = %q", i, tab.String(c))
		}
		b, err := tab.Marshal(c)
		wb, werr := Marshal(colorNames, "color", c)
		if string(b) != string(wb) || (err == nil) != (werr == nil) {
			t.Errorf("Marshal(%d) = %q, %v; want %q, %v", i, b, err, wb, werr)
		}
	}
	var c color
	if err := tab.Unmarshal([]byte("blue"), &c); err != nil || c != 2 {
		t.Errorf("Unmarshal(blue) = %d, %v", c, err)
	}
	if err := tab.Unmarshal([]byte("pink"), &c); err == nil || err.Error() != `"pink" is not red, green or blue` {
		t.Errorf("Unmarshal(pink) = %v", err)
	}
}

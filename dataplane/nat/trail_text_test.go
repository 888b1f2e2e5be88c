package nat

import (
	"strings"
	"testing"
)

// TestEveryCodeHasText: each step code has a stage, a name and a text of
// its own, and the text tables' formats take exactly the one address they
// are given (a stray verb shows as "%!").
func TestEveryCodeHasText(t *testing.T) {
	for c := CodeParsed; c < numCodes; c++ {
		s := Step{Code: c, A: [4]byte{192, 0, 2, 1}}
		text := s.Text()
		if text == "" || strings.Contains(text, "%!") || strings.HasPrefix(text, "code ") {
			t.Errorf("code %d (%s): text %q", c, c, text)
		}
		if c.String() == "unknown" || s.Stage() == "unknown" {
			t.Errorf("code %d: name %q, stage %q", c, c, s.Stage())
		}
		if fixedTexts[c] != "" && addrTexts[c] != "" {
			t.Errorf("code %s has a fixed text and an address text", c)
		}
		if addrTexts[c] != "" && !strings.Contains(text, "192.0.2.1") {
			t.Errorf("code %s: text %q does not name address A", c, text)
		}
	}
}

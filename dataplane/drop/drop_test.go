package drop

import (
	"regexp"
	"testing"
)

// Names are Prometheus label values and API strings: every reason has one,
// they are unique and snake_case.
func TestReasonNames(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	seen := map[string]Reason{}
	for r := Reason(0); r < NumReasons; r++ {
		n := r.String()
		if !valid.MatchString(n) {
			t.Errorf("reason %d has name %q", r, n)
		}
		if prev, dup := seen[n]; dup {
			t.Errorf("reasons %d and %d share the name %q", prev, r, n)
		}
		seen[n] = r
	}
	if NumReasons.String() != "unknown" || Reason(255).String() != "unknown" {
		t.Error("out-of-range reasons must print as unknown")
	}
}

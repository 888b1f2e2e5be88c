package enumtext

// Table is an enum's names and the kind they name, for an enum type to
// build its String, MarshalText and UnmarshalText on in one line each:
//
//	var colors = enumtext.Table[Color]{Kind: "color", Names: []string{Red: "red", Blue: "blue"}}
//
//	func (c Color) String() string               { return colors.String(c) }
//	func (c Color) MarshalText() ([]byte, error) { return colors.Marshal(c) }
//	func (c *Color) UnmarshalText(t []byte) error { return colors.Unmarshal(t, c) }
type Table[T ~uint8] struct {
	Kind  string   // what the values are, in errors: "backend"
	Names []string // indexed by value
}

// String is String over the table.
func (t Table[T]) String(v T) string { return String(t.Names, t.Kind, v) }

// Marshal is Marshal over the table.
func (t Table[T]) Marshal(v T) ([]byte, error) { return Marshal(t.Names, t.Kind, v) }

// Unmarshal is Unmarshal over the table.
func (t Table[T]) Unmarshal(text []byte, v *T) error { return Unmarshal(t.Names, text, v) }

package promtext

import "testing"

func TestLabel(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"w-1", `"w-1"`},
		{`a"b`, `"a\"b"`},
		{`back\slash`, `"back\\slash"`},
		{"two\nlines", `"two\nlines"`},
	} {
		if got := Label(c.in); got != c.want {
			t.Errorf("Label(%q) = %s, want %s", c.in, got, c.want)
		}
	}
	if Bool(true) != 1 || Bool(false) != 0 {
		t.Error("Bool")
	}
}

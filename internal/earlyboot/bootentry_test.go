package earlyboot

import "testing"

func TestBootEntryNames(t *testing.T) {
	tests := []struct {
		name string
		want BootEntry
		ok   bool
	}{
		{"kubedos-1-0a1b2c3d.efi", BootEntry{Gen: 1, Build: "0a1b2c3d"}, true},
		{"kubedos-12-0a1b2c3d+3.efi", BootEntry{Gen: 12, Build: "0a1b2c3d", Counted: true, Left: 3}, true},
		{"kubedos-2-0a1b2c3d+0-3.efi", BootEntry{Gen: 2, Build: "0a1b2c3d", Counted: true, Left: 0, Done: 3}, true},
		{"kubedos-2-0a1b2c3d+1-2.efi", BootEntry{Gen: 2, Build: "0a1b2c3d", Counted: true, Left: 1, Done: 2}, true},
		{"kubedos-x-0a1b.efi", BootEntry{}, false},
		{"kubedos-1-0A1B.efi", BootEntry{}, false},
		{"kubedos-1-0a1b.efi.tmp", BootEntry{}, false},
		{"other.efi", BootEntry{}, false},
	}
	for _, tt := range tests {
		got, ok := ParseBootEntry(tt.name)
		if ok != tt.ok || got != tt.want {
			t.Errorf("ParseBootEntry(%q) = %+v, %v; want %+v, %v", tt.name, got, ok, tt.want, tt.ok)
			continue
		}
		if ok && got.Name() != tt.name {
			t.Errorf("%q renders back as %q", tt.name, got.Name())
		}
	}
	if e, _ := ParseBootEntry("kubedos-2-ab12+0-3.efi"); !e.Bad() {
		t.Error("an entry with no tries left is not bad")
	}
	if p := UKIEntryPath(3, "ab12", 3); p != "EFI/Linux/kubedos-3-ab12+3.efi" {
		t.Errorf("UKIEntryPath = %s", p)
	}
}

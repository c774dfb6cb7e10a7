package qemu

import (
	"slices"
	"testing"
)

func TestQEMUArgsSMBIOS(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  VMConfig
		want []string // the -smbios values, in order
	}{
		{name: "none", cfg: VMConfig{}, want: nil},
		{name: "local target", cfg: VMConfig{Serial: "kubedos-101", UUID: "u", OEMStrings: []string{"kubedos.name=w-1", "a=b,c"}},
			want: []string{"type=11,value=kubedos.name=w-1,value=a=b,,c", "type=1,serial=kubedos-101,uuid=u"}},
		{name: "proxmox-style SKU", cfg: VMConfig{Serial: "kubedos-101", SKU: "kubedos.name=w-1;kubedos.hub=10.0.0.10:7443,x"},
			want: []string{"type=1,serial=kubedos-101,sku=kubedos.name=w-1;kubedos.hub=10.0.0.10:7443,,x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := qemuArgs(tc.cfg, "vars.fd", "tpm.sock", "serial.log")
			var got []string
			for i, a := range args {
				if a == "-smbios" && i+1 < len(args) {
					got = append(got, args[i+1])
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestQEMUArgsConsoleSocket(t *testing.T) {
	if args := qemuArgs(VMConfig{}, "vars.fd", "tpm.sock", "serial.log"); slices.Contains(args, "virtio-serial-pci,id=kdser") {
		t.Errorf("a VM without ConsoleSocket has the console port: %q", args)
	}
	args := qemuArgs(VMConfig{ConsoleSocket: "/tmp/vm/console.sock"}, "vars.fd", "tpm.sock", "serial.log")
	for _, want := range []string{"socket,id=kdcon,path=/tmp/vm/console.sock,server=on,wait=off",
		"virtserialport,bus=kdser.0,chardev=kdcon,name=org.kubedos.console"} {
		if !slices.Contains(args, want) {
			t.Errorf("%q not in %q", want, args)
		}
	}
}

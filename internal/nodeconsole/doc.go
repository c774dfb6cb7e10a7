// Package nodeconsole is the node's own console: a full-screen, read-mostly
// status screen on tty1 (or the serial console when the machine has no
// display) in place of a login prompt. kubedosd runs it as a controller and
// hands it a Snapshot of what it knows (internal/agent gathers it from the
// same code as `node health`, `node planes` and `node version`); this
// package only draws and reads keys.
//
// The one write it allows is Day 0 on a bare-metal node whose firmware
// names no hub: a form for the node's name, LAN address, gateway and hub,
// validated by internal/nodeid and handed to the agent's Setup.
//
// PickTTY chooses the terminal (tty1 when a display shows it, else the
// serial console, where the screen waits for a key); Port is a read-only
// copy on a virtio-serial port, which the e2e tests read.
//
// It writes plain ANSI (VT100/ECMA-48) sequences rather than use a TUI
// library: the screen is a list of lines redrawn in full every refresh, so
// it needs cursor addressing, erase-line, autowrap off and three colours,
// which the Linux VT and every serial terminal understand without a
// terminfo database. bubbletea and tview assume a controlling terminal on
// stdin with SIGWINCH and bring a dozen modules into the node's daemon;
// here the terminal is a device kubedosd opens, its size is polled with
// TIOCGWINSZ, and the tests read the exact bytes through a VT emulator.
package nodeconsole

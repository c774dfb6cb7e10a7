package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"

	"github.com/google/go-tpm-tools/simulator"
)

// The go-tpm-tools simulator is the Microsoft reference TPM linked in with
// cgo: one global instance per process. To have several TPMs working at
// once (one per concurrent enrollment), this command runs itself as worker
// processes, each serving one simulator over its stdin and stdout:
//
//	request  op u8 ('S' start, 'C' command), length u32 BE, payload
//	         'S': seed i64 BE. Close the running simulator and start a fresh
//	              one whose hierarchy seeds derive from seed (another seed,
//	              another EK: another machine).
//	         'C': one TPM 2.0 command.
//	reply    status u8 (0 ok, 1 error), length u32 BE, payload (the TPM
//	         response, or the error message)
//
// The worker exits at EOF on stdin.

const (
	opStart   = 'S'
	opCommand = 'C'
)

// maxFrame bounds a frame: TPM commands and responses are a few KiB.
const maxFrame = 1 << 20

func writeFrame(w io.Writer, kind byte, payload []byte) error {
	hdr := make([]byte, 5, 5+len(payload))
	hdr[0] = kind
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	_, err := w.Write(append(hdr, payload...))
	return err
}

func readFrame(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("frame of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return 0, nil, err
	}
	return hdr[0], b, nil
}

// serveSimulator is the worker process: it runs one simulator for the
// requests on r and answers on w until r ends.
func serveSimulator(r io.Reader, w io.Writer) error {
	in, out := bufio.NewReader(r), bufio.NewWriter(w)
	var sim *simulator.Simulator
	defer func() {
		if sim != nil {
			sim.Close()
		}
	}()
	reply := func(err error, payload []byte) error {
		if err != nil {
			return writeFrame(out, 1, []byte(err.Error()))
		}
		return writeFrame(out, 0, payload)
	}
	resp := make([]byte, 8192)
	for {
		op, payload, err := readFrame(in)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch op {
		case opStart:
			if len(payload) != 8 {
				err = reply(fmt.Errorf("start: seed of %d bytes", len(payload)), nil)
				break
			}
			if sim != nil {
				sim.Close()
				sim = nil
			}
			s, serr := simulator.GetWithFixedSeedInsecure(int64(binary.BigEndian.Uint64(payload)))
			if serr == nil {
				sim = s
			}
			err = reply(serr, nil)
		case opCommand:
			if sim == nil {
				err = reply(errors.New("no simulator started"), nil)
				break
			}
			if _, werr := sim.Write(payload); werr != nil {
				err = reply(werr, nil)
				break
			}
			n, rerr := sim.Read(resp)
			err = reply(rerr, resp[:n])
		default:
			err = fmt.Errorf("unknown op %q", op)
		}
		if err != nil {
			return err
		}
		if err := out.Flush(); err != nil {
			return err
		}
	}
}

// simProcess is the parent's end of one worker: a TPM command channel (a
// command's round trip happens in Write; Read returns its response) that
// can be restarted as another machine's TPM.
type simProcess struct {
	cmd  *exec.Cmd
	w    io.WriteCloser
	r    *bufio.Reader
	resp []byte
}

// startSimProcess runs this executable as a simulator worker.
func startSimProcess() (*simProcess, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-"+workerFlag)
	cmd.Stderr = os.Stderr
	w, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	r, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("simulator worker: %w", err)
	}
	return &simProcess{cmd: cmd, w: w, r: bufio.NewReader(r)}, nil
}

func (p *simProcess) call(op byte, payload []byte) ([]byte, error) {
	if err := writeFrame(p.w, op, payload); err != nil {
		return nil, fmt.Errorf("simulator worker: %w", err)
	}
	status, b, err := readFrame(p.r)
	if err != nil {
		return nil, fmt.Errorf("simulator worker: %w", err)
	}
	if status != 0 {
		return nil, fmt.Errorf("simulator worker: %s", b)
	}
	return b, nil
}

// Reset makes the worker's TPM a fresh one, seeded with seed.
func (p *simProcess) Reset(seed int64) error {
	_, err := p.call(opStart, binary.BigEndian.AppendUint64(nil, uint64(seed)))
	return err
}

func (p *simProcess) Write(cmd []byte) (int, error) {
	resp, err := p.call(opCommand, cmd)
	if err != nil {
		return 0, err
	}
	p.resp = resp
	return len(cmd), nil
}

func (p *simProcess) Read(b []byte) (int, error) {
	if len(b) < len(p.resp) {
		return 0, fmt.Errorf("simulator worker: response of %d bytes, buffer %d", len(p.resp), len(b))
	}
	n := copy(b, p.resp)
	p.resp = nil
	return n, nil
}

// Close ends the worker.
func (p *simProcess) Close() error {
	p.w.Close()
	return p.cmd.Wait()
}

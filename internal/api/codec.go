// Package api is the wire contract between kubedos components: the hub's
// Enrollment and Admin services (and later the node API), their request and
// response types, gRPC service descriptors and typed clients.
//
// Messages are JSON over gRPC (a registered codec) rather than protobuf:
// the types are plain Go structs shared with internal/attest, there is no
// protoc in the toolchain, and JSON keeps the wire readable in audits.
package api

import (
	"encoding/json"
	"fmt"

	"google.golang.org/grpc/encoding"
)

// CodecName is the gRPC content subtype of kubedos messages.
const CodecName = "kubedos-json"

// MaxMessageBytes bounds a message in either direction; an enrollment with
// a large event log is well under it.
const MaxMessageBytes = 16 << 20

type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal is strict: an unknown field is an error, as for every input.
func (jsonCodec) Unmarshal(data []byte, v any) error {
	if len(data) > MaxMessageBytes {
		return fmt.Errorf("message of %d bytes exceeds %d", len(data), MaxMessageBytes)
	}
	dec := json.NewDecoder(bytesReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode %T: %w", v, err)
	}
	return nil
}

func (jsonCodec) Name() string { return CodecName }

// Codec is the codec both ends force, so no protobuf is ever attempted.
var Codec encoding.Codec = jsonCodec{}

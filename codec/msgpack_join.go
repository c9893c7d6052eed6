package codec

import "encoding/binary"

// JoinMsgpackArray returns one msgpack array whose elements are the given
// already-encoded msgpack values, as a streamed answer gathered into one body
// needs. The items are copied, not validated.
func JoinMsgpackArray(items [][]byte) []byte {
	n, size := len(items), 5
	for _, it := range items {
		size += len(it)
	}
	out := make([]byte, 0, size)
	switch {
	case n < 16:
		out = append(out, 0x90|byte(n))
	case n <= 0xffff:
		out = binary.BigEndian.AppendUint16(append(out, 0xdc), uint16(n))
	default:
		out = binary.BigEndian.AppendUint32(append(out, 0xdd), uint32(n))
	}
	for _, it := range items {
		out = append(out, it...)
	}
	return out
}

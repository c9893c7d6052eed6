package codec

import (
	"bytes"
	"testing"
)

func TestJoinMsgpackArray(t *testing.T) {
	for _, n := range []int{0, 1, 15, 16, 65535, 65536} {
		items := make([][]byte, n)
		for i := range items {
			items[i] = []byte{byte(i % 100)} // positive fixints
		}
		joined := JoinMsgpackArray(items)
		v, err := DecodeMsgpack(joined)
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		arr, ok := v.([]any)
		if !ok || len(arr) != n {
			t.Fatalf("n=%d: decoded %T of length %d", n, v, len(arr))
		}
		for i, x := range arr {
			if x != int64(i%100) {
				t.Fatalf("n=%d: element %d = %v", n, i, x)
			}
		}
	}
	if got := JoinMsgpackArray([][]byte{{0x01}, {0xc0}}); !bytes.Equal(got, []byte{0x92, 0x01, 0xc0}) {
		t.Errorf("JoinMsgpackArray = % x", got)
	}
}

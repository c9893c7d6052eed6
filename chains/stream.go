package chains

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"unicode/utf8"
)

// Delimiters of Truss Chains' typed streaming frames (streaming.py): each
// frame is the delimiter byte, the payload length as a big-endian uint32,
// then the payload (the item's JSON).
const (
	frameHeader byte = 2
	frameItem   byte = 3
	frameFooter byte = 4

	frameHeaderLen = 5
	// maxFrameBytes caps one frame's payload, as Truss caps request bodies.
	maxFrameBytes = 100 << 20
)

// Framed is the item of a typed stream that also has a header and a
// footer, as Truss's StreamTypes(item_type, header_type, footer_type): each
// value sets exactly one field. A producer yields the header first (if
// any), then items, then the footer (if any); each travels in its own frame
// kind.
type Framed[H, I, F any] struct {
	Header *H
	Item   *I
	Footer *F
}

// frameSource and frameSink are how the stream code, which knows items only
// by reflection, reads and fills a Framed.
type (
	frameSource interface {
		frame() (byte, reflect.Value, error)
	}
	frameSink interface {
		setFrame(delimiter byte, payload []byte) error
	}
)

func (f Framed[H, I, F]) frame() (byte, reflect.Value, error) {
	switch {
	case f.Header != nil && f.Item == nil && f.Footer == nil:
		return frameHeader, reflect.ValueOf(f.Header).Elem(), nil
	case f.Item != nil && f.Header == nil && f.Footer == nil:
		return frameItem, reflect.ValueOf(f.Item).Elem(), nil
	case f.Footer != nil && f.Header == nil && f.Item == nil:
		return frameFooter, reflect.ValueOf(f.Footer).Elem(), nil
	}
	return 0, reflect.Value{}, errors.New("chains: a Framed value must set exactly one of Header, Item and Footer")
}

func (f *Framed[H, I, F]) setFrame(delimiter byte, payload []byte) error {
	switch delimiter {
	case frameHeader:
		f.Header = new(H)
		return decodeValue(payload, false, reflect.ValueOf(f.Header).Elem())
	case frameItem:
		f.Item = new(I)
		return decodeValue(payload, false, reflect.ValueOf(f.Item).Elem())
	}
	f.Footer = new(F)
	return decodeValue(payload, false, reflect.ValueOf(f.Footer).Elem())
}

var frameSinkType = reflect.TypeFor[frameSink]()

// ErrStreamFraming means a typed stream's bytes are not well-formed frames.
var ErrStreamFraming = errors.New("chains: malformed stream framing")

// appendFrame appends one frame holding payload.
func appendFrame(dst []byte, delimiter byte, payload []byte) []byte {
	dst = append(dst, delimiter)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

// readFrame reads one frame. It returns io.EOF at a clean end of stream and
// ErrStreamFraming for a partial frame, an unknown delimiter or an oversized
// payload.
func readFrame(r io.Reader) (byte, []byte, error) {
	var hdr [frameHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, fmt.Errorf("%w: partial frame header", ErrStreamFraming)
		}
		return 0, nil, err
	}
	delim := hdr[0]
	if delim != frameHeader && delim != frameItem && delim != frameFooter {
		return 0, nil, fmt.Errorf("%w: unknown delimiter %d", ErrStreamFraming, delim)
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrameBytes {
		return 0, nil, fmt.Errorf("%w: frame of %d bytes is over the %d-byte limit", ErrStreamFraming, n, maxFrameBytes)
	}
	var buf bytes.Buffer
	got, err := io.CopyN(&buf, r, int64(n))
	if err != nil {
		if errors.Is(err, io.EOF) {
			return 0, nil, fmt.Errorf("%w: frame cut after %d of %d bytes", ErrStreamFraming, got, n)
		}
		return 0, nil, err
	}
	return delim, buf.Bytes(), nil
}

// runStream runs a Chainlet's iter.Seq2 and hands each item's wire bytes to
// emit (strings as UTF-8, bytes raw, items as frames) until emit returns
// false. An error yielded by the producer, or a panic in it, ends the stream
// after onError, as Truss logs it and ends the stream cleanly.
func runStream(seq reflect.Value, kind streamKind, emit func([]byte) bool, onError func(error)) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			onError(&panicError{value: p, frames: userFrames(1)})
		}
	}()
	var frame []byte
	yield := reflect.MakeFunc(seq.Type().In(0), func(args []reflect.Value) []reflect.Value {
		if !args[1].IsNil() {
			onError(args[1].Interface().(error))
			return []reflect.Value{reflect.ValueOf(false)}
		}
		var chunk []byte
		switch kind {
		case streamStrings:
			chunk = []byte(args[0].String())
		case streamBytes:
			chunk = args[0].Bytes()
		case streamItems:
			delim, v := frameItem, args[0]
			if f, ok := v.Interface().(frameSource); ok {
				var err error
				if delim, v, err = f.frame(); err != nil {
					onError(err)
					return []reflect.Value{reflect.ValueOf(false)}
				}
			}
			payload, err := encodeValue(v, false)
			if err != nil {
				onError(err)
				return []reflect.Value{reflect.ValueOf(false)}
			}
			frame = appendFrame(frame[:0], delim, payload)
			chunk = frame
		}
		ok := len(chunk) == 0 || emit(chunk)
		return []reflect.Value{reflect.ValueOf(ok)}
	})
	seq.Call([]reflect.Value{yield})
}

// writeStream writes a stream as a chunked octet-stream answer, flushing
// after each item; a client that goes away makes the write fail, which
// tells the producer to stop.
func writeStream(w http.ResponseWriter, seq reflect.Value, kind streamKind, onError func(error)) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	rc.Flush()
	runStream(seq, kind, func(chunk []byte) bool {
		if _, err := w.Write(chunk); err != nil {
			return false
		}
		return rc.Flush() == nil
	}, onError)
}

// gatherStream collects a stream into one string, for Truss's gather
// quirk (a client sending exactly Accept: application/json).
func gatherStream(seq reflect.Value, kind streamKind, onError func(error)) string {
	var b bytes.Buffer
	runStream(seq, kind, func(chunk []byte) bool {
		b.Write(chunk)
		return true
	}, onError)
	return b.String()
}

// makeSeq builds the iter.Seq2 a streaming Dep returns: it reads body as the
// dependency's chunks (strings and bytes as they arrive, items from typed
// frames) and closes it when the loop ends or ctx is done.
func makeSeq(ctx context.Context, seqType reflect.Type, kind streamKind, item reflect.Type, body io.ReadCloser) reflect.Value {
	stop := context.AfterFunc(ctx, func() { body.Close() })
	return reflect.MakeFunc(seqType, func(args []reflect.Value) []reflect.Value {
		defer stop()
		defer body.Close()
		yield := args[0]
		emit := func(v reflect.Value, err error) bool {
			errV := reflect.Zero(errorType)
			if err != nil {
				errV = reflect.ValueOf(&err).Elem()
			}
			if !v.IsValid() {
				v = reflect.Zero(item)
			}
			return yield.Call([]reflect.Value{v, errV})[0].Bool()
		}
		readChunks(kind, item, body, emit)
		return nil
	})
}

func readChunks(kind streamKind, item reflect.Type, body io.Reader, emit func(reflect.Value, error) bool) {
	if kind == streamItems {
		readFrames(item, bufio.NewReader(body), emit)
		return
	}
	buf := make([]byte, 32<<10)
	var pending []byte // an incomplete UTF-8 sequence held back from a string chunk
	for {
		n, err := body.Read(buf)
		if n > 0 {
			chunk := append(pending, buf[:n]...)
			pending = nil
			var v reflect.Value
			if kind == streamStrings {
				cut := completeUTF8(chunk)
				pending = append([]byte(nil), chunk[cut:]...)
				v = reflect.ValueOf(string(chunk[:cut])).Convert(item)
			} else {
				v = reflect.ValueOf(bytes.Clone(chunk)).Convert(item)
			}
			if v.Len() > 0 && !emit(v, nil) {
				return
			}
		}
		if errors.Is(err, io.EOF) {
			if len(pending) > 0 {
				emit(reflect.ValueOf(string(pending)).Convert(item), nil)
			}
			return
		}
		if err != nil {
			emit(reflect.Value{}, err)
			return
		}
	}
}

// readFrames reads a typed stream: items only, or, for a Framed item type,
// an optional header first, items, and an optional footer last.
func readFrames(item reflect.Type, r io.Reader, emit func(reflect.Value, error) bool) {
	framed := reflect.PointerTo(item).Implements(frameSinkType)
	for n, ended := 0, false; ; n++ {
		delim, payload, err := readFrame(r)
		if errors.Is(err, io.EOF) {
			return
		}
		switch {
		case err != nil:
		case ended:
			err = fmt.Errorf("%w: a frame after the footer", ErrStreamFraming)
		case delim != frameItem && !framed:
			err = fmt.Errorf("%w: a stream of plain items got a header or footer frame (use chains.Framed)", ErrStreamFraming)
		case delim == frameHeader && n > 0:
			err = fmt.Errorf("%w: a header frame after the first frame", ErrStreamFraming)
		}
		if err != nil {
			emit(reflect.Value{}, err)
			return
		}
		ended = delim == frameFooter
		v := reflect.New(item)
		if framed {
			err = v.Interface().(frameSink).setFrame(delim, payload)
		} else {
			err = decodeValue(payload, false, v.Elem())
		}
		if err != nil {
			emit(reflect.Value{}, err)
			return
		}
		if !emit(v.Elem(), nil) {
			return
		}
	}
}

// completeUTF8 returns the length of b without a trailing incomplete UTF-8
// sequence (at most 3 bytes are held back).
func completeUTF8(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-3; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return i
			}
			break
		}
	}
	return len(b)
}

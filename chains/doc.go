// Package chains runs Truss Chains in Go: a Chain is a set of Chainlets,
// each a Go type with one method RunRemote(ctx, In) (Out, error), that call
// each other over Truss's predict route with Truss Chains' wire protocol
// (truss-wire.md §5), so Go and Python Chainlets can call each other.
//
// A Chain is a Go main package that calls Main with its Chainlets; the same
// binary serves any one of them (--chainlet NAME) behind modelserver's
// server (readiness, access log, /metrics), writes their deployment files
// (gen-deploy), and RunLocal runs the whole Chain in one process, with mocks.
//
//	type SayHelloInput struct {
//		Name string `json:"name"`
//	}
//
//	type SayHello struct{}
//
//	func (SayHello) RunRemote(ctx context.Context, in SayHelloInput) (string, error)
//
//	type HelloAll struct {
//		chains.Entrypoint
//		SayHello chains.Dep[SayHelloInput, string] `chains:"SayHello,retries=3"`
//	}
//
//	func main() { chains.Main(&HelloAll{}, &SayHello{}) }
//
// Wire contract:
//   - Request: In as a JSON object (or msgpack map when the dependency is
//     binary), keys named by In's json tags; response: Out as the bare value.
//     Tensors (tensor.Tensor) travel as NumpyArrayField objects in JSON and
//     as msgpack_numpy ndarrays in binary mode, through package codec.
//   - Errors: a failing Chainlet answers 500 (or an HTTPError's status) with
//     {"error": RemoteErrorDetail} and Truss's error headers; callers get a
//     *RemoteError whose message is Truss's nested Chainlet-Traceback tree and
//     whose Unwrap walks down the chain of remote errors.
//   - Streams: Out = iter.Seq2[T, error] answers chunked octet-stream; string
//     and []byte chunks are raw (chunk boundaries are not kept), other items
//     are Truss's 5-byte-prefixed JSON frames, with a header and a footer
//     when T is a Framed. A producer's error ends the stream cleanly (logged),
//     as in Truss; an error before the stream starts is a normal error.
//   - Retries count total attempts, retry every failure at once (no
//     backoff), and a timeout bounds each attempt, as Truss's stub does.
//   - Calls forward traceparent, x-baseten-request-id and
//     x-baseten-chain-request-id, and send the Chain's API key.
//
// Concurrency: a Chain is immutable after New, except that binding
// (Chain.Handler, Chain.Serve, RunLocal) writes the Dep fields of the
// Chainlet structs; bind before serving. A bound Dep is safe for concurrent
// use; its calls in flight are bounded by its concurrency option. RunRemote
// is called concurrently for concurrent requests.
//
// Buffer ownership: decoded inputs may alias the request body ([]byte and
// tensor data), which is not reused; a Chainlet may keep them.
package chains

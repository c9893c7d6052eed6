// Package grpcserver is the gRPC transport: the Open Inference Protocol
// service inference.GRPCInferenceService (package proto/inferencepb), with
// Triton's bidirectional ModelStreamInfer, the standard health service
// (grpc.health.v1.Health) and server reflection, so that Triton and KServe
// clients, grpcurl and Kubernetes gRPC probes work unchanged.
//
// Contract:
//   - A Server answers from the moment it is created. Until SetReady is
//     called ServerReady and ModelReady answer false, inference answers
//     UNAVAILABLE and the health service reports NOT_SERVING; ServerLive
//     answers true throughout. SetClosing turns readiness and health back
//     off while requests in flight finish.
//   - Handlers depend only on the small Predictor and Streamer interfaces;
//     the model's execution policy (batching, concurrency) lives behind
//     them. Inputs are checked with engine.Signature.Check before they run.
//   - Errors map to gRPC codes in one function, statusOf: INVALID_ARGUMENT
//     (engine.ErrInvalidInput, malformed requests), RESOURCE_EXHAUSTED
//     (batching.ErrQueueFull, batching.ErrQueueTimeout), DEADLINE_EXCEEDED,
//     CANCELLED, UNAVAILABLE (loading, closing, batching.ErrClosed),
//     NOT_FOUND (unknown model or version), UNIMPLEMENTED (one answer asked
//     of a streaming model) and INTERNAL (engine.ErrRuntime).
//   - Decoded tensors alias the request message (raw_input_contents), and
//     responses alias the output tensors; neither is copied.
//
// # ModelStreamInfer
//
// Each request on a stream is answered on that stream: a model with a
// Streamer gets one ModelStreamInferResponse per emitted chunk, a model
// with a Predictor exactly one. Following Triton, every infer_response
// carries the bool parameter "triton_final_response": false on chunks, true
// on the response that completes a request. Because a producer's last chunk
// is known only once Stream returns, a streaming request is completed by an
// extra empty response (no outputs, triton_final_response true) when the
// request sets the bool parameter "triton_enable_empty_final_response", as
// Triton's decoupled models do; without it the stream simply stops sending
// for that request. A failed request gets one response with error_message
// set and infer_response holding only its id, model name and version and
// triton_final_response true; the stream goes on.
//
// Requests on one stream run concurrently, at most
// Options.MaxStreamInFlight at a time (further requests wait, which holds
// back reading from the client), and their responses interleave in
// completion order. Exactly one goroutine per stream writes responses; a
// producer's emit blocks until that writer has taken its chunk, so a slow
// client slows the producer down. When the client cancels or disconnects,
// the context of every request in flight on the stream is cancelled, the
// producers' next emit fails, and the RPC returns once all of them have
// returned. When the client half-closes, the requests in flight run to
// completion and the RPC ends with OK after their last response. When the
// server drains (SetClosing, Shutdown), requests that arrive get an
// UNAVAILABLE error response, and once none is in flight the RPC ends with
// UNAVAILABLE, so that no stream holds the shutdown for its whole grace
// period.
//
// # Operability
//
// Every RPC passes through one interceptor pair: the request id (metadata
// x-baseten-request-id, else x-request-id, else generated; echoed in the
// x-request-id header), the API key check (Options.APIKeys; every method
// but Options.OpenMethods answers UNAUTHENTICATED without an accepted
// key), the access log line and the shutdown binding: past the grace
// period of Shutdown, RPCs in flight fail with UNAVAILABLE. Spans come
// from otelgrpc and continue the client's traceparent.
//
// All methods of Server are safe for concurrent use.
package grpcserver

// Package openai serves a language model over OpenAI's HTTP API
// (POST /v1/chat/completions, POST /v1/completions, GET /v1/models), vLLM's
// POST /tokenize and POST /detokenize, GET /health, and the Truss predict
// route and WebSocket for LLMs.
//
// Contract:
//   - An API answers from the moment it is created; until SetModel is called
//     every route answers 503, so the engine can load in the background.
//   - Handlers depend only on the Model interface; ModelFromEngine and
//     NewEngineModel adapt the llm engine, tests use a fake.
//   - The request's context is each sequence's lifetime: a client that
//     disconnects (while queued, during prefill or mid-stream) cancels the
//     context handed to Model.Generate, which aborts the sequence and frees
//     its slot.
//   - Each response has exactly one writing goroutine, the handler's.
//     Sequences of a request (n > 1, or several completion prompts) run
//     concurrently; with more than one, a forwarding goroutine per sequence
//     feeds the writer, and every forwarder has returned when the handler
//     returns.
//   - Streamed events are flushed as soon as they exist, one write per token.
//   - Errors use OpenAI's object {"error":{"message","type","param","code"}}
//     on the OpenAI routes and Truss's {"error": msg} on the predict route;
//     apiErrorFor is the only place that maps errors to statuses.
//   - Streaming follows OpenAI: per choice a first delta with the role
//     (chat), one chunk per text delta, a chunk with finish_reason, then
//     the usage chunk (choices: []) when stream_options.include_usage is
//     set, then data: [DONE]. An error once the stream started, a server
//     shutdown that cuts the stream short included, is an event
//     {"error":{...}} followed by data: [DONE].
//   - Choice j of a request with a seed samples with seed+j, so n > 1 gives
//     different, reproducible choices. Usage counts each prompt once and
//     sums the completions.
//   - Shutdown: a request context cancelled with shutdown.ErrShuttingDown
//     is the server's, not the client's, doing and is answered (503, an
//     error event or frame). WebSocket connections are hijacked, so
//     http.Server.Shutdown does not wait for them: API.Drain and
//     API.Shutdown do, letting each finish its current answer.
//   - Times in metrics are seconds; token counts are the tokenizer's.
//   - All methods are safe for concurrent use.
package openai

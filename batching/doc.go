// Package batching runs requests on an engine.Model through a bounded queue,
// combining requests into batches along the first dimension (dynamic
// batching) and bounding the number of model executions in flight
// (predict_concurrency).
//
// # Batching
//
// A model batches when every input and every output of its Signature has a
// dynamic first dimension (engine.DynamicDim) and the maximum batch size is
// not 0. Requests are then grouped by the trailing shape (shape[1:]) of all
// their inputs; requests of one group are concatenated along dimension 0 in
// arrival order, run once, and every output is split back by row offsets, so
// that each caller receives exactly what an unbatched run of its request
// gives (for a model whose rows are independent of each other). A batch is
// sent when it holds the maximum batch size in rows, else when it holds a
// preferred batch size (the largest that can be formed), else when the next
// request of its group does not fit, else when its oldest request has waited
// the maximum queue delay. Batches are formed only when an execution slot is
// free, so requests keep accumulating while the model is busy; of the groups
// ready to go, the one holding the oldest request goes first.
//
// Models with a fixed first dimension, with no inputs or outputs, or served
// with a maximum batch size of 0 run unbatched, one request per execution,
// through the same queue. Requests with zero rows always run on their own.
// If a batched execution returns an output whose first dimension is not the
// batch's row count (the model mixes rows), no data from it is returned: its
// requests are run again one at a time, the model is treated as unbatchable
// from then on, and Observer.Unbatchable is called once. A model that mixes
// rows but keeps the row count cannot be detected; serve it with
// WithMaxBatchSize(0).
//
// An error returned by a batched execution is returned to every request of
// the batch; a panic in Model.Run becomes an error wrapping engine.ErrRuntime.
//
// # Admission, queueing and cancellation
//
// Admission never blocks: a full queue answers ErrQueueFull at once. A
// request still queued after the queue timeout gets ErrQueueTimeout; the
// timeout covers queueing only, not execution. A request whose context ends
// while it is queued is removed from the queue at once and never executed.
// A request whose context ends while its batch executes gets ctx.Err() at
// once and its result is discarded; when every request of an execution has
// gone, the context passed to Model.Run is cancelled.
//
// # Units
//
// Batch sizes (WithMaxBatchSize, WithPreferredBatchSizes) count rows along
// dimension 0, not requests. The queue size (WithMaxQueueSize) counts queued
// requests, not rows; requests being executed are not queued. Delays and
// timeouts are time.Durations (Triton's max_queue_delay_microseconds of 100
// is WithMaxQueueDelay(100*time.Microsecond)). Predict concurrency counts
// model executions (Model.Run calls) in flight.
//
// # Concurrency and buffer ownership
//
// A Batcher's methods are safe for concurrent use. It runs one scheduler
// goroutine and one goroutine per execution in flight; all of them have
// ended when Close returns.
//
// Predict reads the input tensors (shapes and data) only until it returns:
// before a request executes, its inputs are copied into a buffer owned by
// the batch, allocated once per execution with the exact size, and if the
// caller leaves while that copy is being made Predict waits for it to end.
// The Batcher never writes to the inputs. The outputs Predict returns are
// owned by the caller; a batched request's outputs are disjoint views into
// the batch's output buffers whose capacity is clipped, so appending to or
// writing one never touches another caller's data.
package batching

package openai

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelserver/modelserver/llm"
)

// metrics are the LLM collectors, named after vLLM's (serving-anchors.md
// §3) under the modelserver_llm_ prefix.
type metrics struct {
	ttft             prometheus.Histogram
	itl              prometheus.Histogram
	e2e              prometheus.Histogram
	promptTokens     prometheus.Counter
	generationTokens prometheus.Counter
	finished         *prometheus.CounterVec
}

// Buckets in seconds: vLLM's, extended below 10 ms for small models.
var (
	ttftBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640}
	itlBuckets  = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80}
	e2eBuckets  = []float64{0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920}
)

func newMetrics(reg prometheus.Registerer, stats func() (running, waiting, slotsUsed, slots int)) *metrics {
	m := &metrics{
		ttft: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "modelserver_llm_time_to_first_token_seconds",
			Help:    "Time from a request's arrival to its first generated token, per sequence.",
			Buckets: ttftBuckets,
		}),
		itl: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "modelserver_llm_inter_token_latency_seconds",
			Help:    "Time between two consecutive generated tokens of a sequence.",
			Buckets: itlBuckets,
		}),
		e2e: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "modelserver_llm_e2e_request_latency_seconds",
			Help:    "Time from a request's arrival to its last sequence's end.",
			Buckets: e2eBuckets,
		}),
		promptTokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "modelserver_llm_prompt_tokens_total",
			Help: "Prompt tokens of admitted sequences.",
		}),
		generationTokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "modelserver_llm_generation_tokens_total",
			Help: "Generated tokens.",
		}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelserver_llm_request_success_total",
			Help: "Sequences that ended, by finish reason (stop, length, cancelled, error).",
		}, []string{"finished_reason"}),
	}
	gauge := func(name, help string, pick func(running, waiting, slotsUsed, slots int) int) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			return float64(pick(stats()))
		})
	}
	reg.MustRegister(m.ttft, m.itl, m.e2e, m.promptTokens, m.generationTokens, m.finished,
		gauge("modelserver_llm_num_requests_running", "Sequences holding a KV slot.",
			func(running, _, _, _ int) int { return running }),
		gauge("modelserver_llm_num_requests_waiting", "Sequences admitted and not yet prefilled.",
			func(_, waiting, _, _ int) int { return waiting }),
		gauge("modelserver_llm_kv_slots_used", "KV cache slots in use.",
			func(_, _, used, _ int) int { return used }),
		gauge("modelserver_llm_kv_slots", "KV cache slots in all.",
			func(_, _, _, slots int) int { return slots }),
	)
	for _, reason := range []llm.FinishReason{llm.FinishStop, llm.FinishLength, llm.FinishCancelled, llm.FinishError} {
		m.finished.WithLabelValues(string(reason))
	}
	return m
}

// sequenceClock records one sequence's token times.
type sequenceClock struct {
	last     time.Time
	tokens   int
	finished bool
}

// token records a generated token at t for a request that arrived at start.
func (m *metrics) token(c *sequenceClock, start, t time.Time) {
	if c.tokens == 0 {
		m.ttft.Observe(t.Sub(start).Seconds())
	} else {
		m.itl.Observe(t.Sub(c.last).Seconds())
	}
	c.last = t
	c.tokens++
	m.generationTokens.Inc()
}

// Package cudametrics exports GPU memory to Prometheus: the driver's total,
// free and used memory per device (ONNX Runtime's arena and every other
// process included), what modelserver's own CUDA worker allocated, and the
// accelerator config.yaml asks for.
//
// The values are read at scrape time through each device's worker, with a
// short timeout, so a scrape never waits behind long GPU work: a device that
// does not answer in time is left out of that scrape and counted in
// modelserver_gpu_memory_query_errors_total.
package cudametrics

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelserver/modelserver/cuda"
)

// Source is one GPU to report on; *cuda.Worker implements it.
type Source interface {
	Device() cuda.Device
	MemoryReport(ctx context.Context) (cuda.MemoryReport, error)
}

var _ Source = (*cuda.Worker)(nil)

// QueryTimeout bounds how long a scrape waits for one device.
const QueryTimeout = 2 * time.Second

var (
	infoDesc = prometheus.NewDesc("modelserver_gpu_info",
		"A GPU modelserver uses (value 1), with its name, UUID and compute capability.",
		[]string{"device", "name", "uuid", "compute_capability"}, nil)
	totalDesc = prometheus.NewDesc("modelserver_gpu_memory_total_bytes",
		"Device memory of the GPU.", []string{"device"}, nil)
	freeDesc = prometheus.NewDesc("modelserver_gpu_memory_free_bytes",
		"Free device memory as the driver reports it (all processes counted).", []string{"device"}, nil)
	usedDesc = prometheus.NewDesc("modelserver_gpu_memory_used_bytes",
		"Device memory in use: total minus free, ONNX Runtime's arena and other processes included.", []string{"device"}, nil)
	allocDesc = prometheus.NewDesc("modelserver_gpu_worker_allocated_bytes",
		"Device memory allocated by modelserver's CUDA worker itself.", []string{"device"}, nil)
	peakDesc = prometheus.NewDesc("modelserver_gpu_worker_allocated_peak_bytes",
		"The most device memory modelserver's CUDA worker has held at once.", []string{"device"}, nil)
	pinnedDesc = prometheus.NewDesc("modelserver_gpu_worker_pinned_host_bytes",
		"Page-locked host memory allocated by modelserver's CUDA worker.", []string{"device"}, nil)
	requestedDesc = prometheus.NewDesc("modelserver_gpu_requested",
		"GPUs config.yaml's resources.accelerator asks for, by type.", []string{"accelerator"}, nil)
)

// Collector is a prometheus.Collector for a set of GPUs.
type Collector struct {
	sources []Source
	accel   cuda.Accelerator
	timeout time.Duration
	errors  *prometheus.CounterVec
	mu      sync.Mutex // serialises scrapes, so queries never pile up on a worker
}

// New returns a collector for sources and the accelerator requested in
// config.yaml (the zero Accelerator for none). With no sources only the
// request is reported, which is what a CPU placement shows.
func New(accel cuda.Accelerator, sources ...Source) *Collector {
	return &Collector{
		sources: sources,
		accel:   accel,
		timeout: QueryTimeout,
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelserver_gpu_memory_query_errors_total",
			Help: "Scrapes that could not read a GPU's memory in time (its worker was busy or stopped).",
		}, []string{"device"}),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{infoDesc, totalDesc, freeDesc, usedDesc, allocDesc, peakDesc, pinnedDesc, requestedDesc} {
		ch <- d
	}
	c.errors.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.accel.Type != "" {
		ch <- prometheus.MustNewConstMetric(requestedDesc, prometheus.GaugeValue, float64(c.accel.Count), c.accel.Type)
	}
	for _, s := range c.sources {
		d := s.Device()
		dev := "cuda:" + strconv.Itoa(d.Index)
		ch <- prometheus.MustNewConstMetric(infoDesc, prometheus.GaugeValue, 1,
			dev, d.Name, d.UUID, strconv.Itoa(d.ComputeCapability/10)+"."+strconv.Itoa(d.ComputeCapability%10))
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		r, err := s.MemoryReport(ctx)
		cancel()
		total := d.TotalMemory
		if err == nil {
			total = r.Total
		}
		ch <- prometheus.MustNewConstMetric(totalDesc, prometheus.GaugeValue, float64(total), dev)
		ch <- prometheus.MustNewConstMetric(allocDesc, prometheus.GaugeValue, float64(r.Stats.DeviceBytes), dev)
		ch <- prometheus.MustNewConstMetric(peakDesc, prometheus.GaugeValue, float64(r.Stats.PeakDeviceBytes), dev)
		ch <- prometheus.MustNewConstMetric(pinnedDesc, prometheus.GaugeValue, float64(r.Stats.PinnedBytes), dev)
		if err != nil {
			c.errors.WithLabelValues(dev).Inc()
			continue
		}
		ch <- prometheus.MustNewConstMetric(freeDesc, prometheus.GaugeValue, float64(r.Free), dev)
		ch <- prometheus.MustNewConstMetric(usedDesc, prometheus.GaugeValue, float64(r.Total-min(r.Free, r.Total)), dev)
	}
	c.errors.Collect(ch)
}

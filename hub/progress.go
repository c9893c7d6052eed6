package hub

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
)

// barRedraw is the shortest time between two redraws of the bar; faster
// redraws only cost terminal output.
const barRedraw = 200 * time.Millisecond

// barWidth is the number of cells of the bar itself.
const barWidth = 24

// progress reports one file's download: a bar redrawn in place on a
// terminal, otherwise a log line every interval. It is used by one
// goroutine at a time.
type progress struct {
	name     string
	total    int64
	started  time.Time
	initial  int64
	last     time.Time
	now      func() time.Time
	terminal io.Writer
	log      *slog.Logger
	interval time.Duration
}

func (c *Client) newProgress(name string, total, initial int64) *progress {
	p := &progress{name: name, total: total, initial: initial, now: c.now, log: c.log, interval: c.interval}
	if c.isTerminal {
		p.terminal = c.progress
	}
	p.started = p.now()
	p.last = p.started
	return p
}

// update reports that done bytes of the file are on disk.
func (p *progress) update(done int64) {
	now := p.now()
	if p.terminal != nil {
		if now.Sub(p.last) >= barRedraw {
			p.last = now
			fmt.Fprint(p.terminal, "\r"+renderBar(p.name, done, p.total, p.rate(done, now)))
		}
		return
	}
	if now.Sub(p.last) >= p.interval {
		p.last = now
		p.log.Info("download progress", "file", p.name, "percent", percent(done, p.total),
			"bytes", done, "total_bytes", p.total, "bytes_per_second", int64(p.rate(done, now)))
	}
}

// restart resets the rate after the download started over from byte 0.
func (p *progress) restart() {
	p.started = p.now()
	p.initial = 0
}

// finish draws the final state of the bar and ends its line.
func (p *progress) finish(done int64) {
	if p.terminal != nil {
		fmt.Fprint(p.terminal, "\r"+renderBar(p.name, done, p.total, p.rate(done, p.now()))+"\n")
	}
}

// rate is the transfer speed of this run in bytes per second; bytes found
// on disk from an earlier run do not count.
func (p *progress) rate(done int64, now time.Time) float64 {
	secs := now.Sub(p.started).Seconds()
	if secs <= 0 {
		return 0
	}
	return float64(done-p.initial) / secs
}

func percent(done, total int64) int {
	if total <= 0 {
		return 100
	}
	return int(done * 100 / total)
}

// renderBar formats one line of the bar, e.g.
// "model.onnx.data   42% [##########              ] 1.0 GiB / 2.5 GiB  12.0 MiB/s".
func renderBar(name string, done, total int64, rate float64) string {
	const nameWidth = 32
	if r := []rune(name); len(r) > nameWidth {
		name = "…" + string(r[len(r)-nameWidth+1:])
	}
	pct := percent(done, total)
	filled := min(barWidth, pct*barWidth/100)
	return fmt.Sprintf("%-*s %3d%% [%s%s] %s / %s  %s/s", nameWidth, name, pct,
		strings.Repeat("#", filled), strings.Repeat(" ", barWidth-filled),
		humanBytes(float64(done)), humanBytes(float64(total)), humanBytes(rate))
}

// humanBytes formats a byte count with binary units and one decimal.
func humanBytes(n float64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%.0f B", n)
	}
	i := -1
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %ciB", n, units[i])
}

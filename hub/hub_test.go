package hub

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelserver/modelserver/internal/syncbuf"

	"go.uber.org/goleak"

	"github.com/modelserver/modelserver/hub/hubtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testRepo   = "acme/tiny-llm-onnx"
	testCommit = "0123456789abcdef0123456789abcdef01234567"
	testToken  = "hf_secret_test_token"
)

// testFiles is a small repository with two variant folders, LFS weights and
// plain configuration files.
func testFiles() []hubtest.File {
	rng := rand.New(rand.NewPCG(1, 2))
	weights := make([]byte, 300<<10)
	for i := range weights {
		weights[i] = byte(rng.Uint32())
	}
	return []hubtest.File{
		{Path: "README.md", Data: []byte("# tiny\n")},
		{Path: "cpu/genai_config.json", Data: []byte(`{"model":{"decoder":{"filename":"model.onnx"}}}`)},
		{Path: "cpu/tokenizer.json", Data: []byte(`{"model":{}}`)},
		{Path: "cpu/model.onnx", Data: weights[:20<<10], LFS: true},
		{Path: "cpu/model.onnx.data", Data: weights, LFS: true},
		{Path: "cpu/empty.txt", Data: nil},
		{Path: "gpu/genai_config.json", Data: []byte(`{"gpu":true}`)},
	}
}

func cpuOnly(p string) bool { return strings.HasPrefix(p, "cpu/") }

type fixture struct {
	hub    *hubtest.Server
	files  []hubtest.File
	cache  string
	logBuf *syncbuf.Buffer
}

func newFixture(t *testing.T, opts hubtest.Options) *fixture {
	t.Helper()
	if opts.Repo == "" {
		opts.Repo = testRepo
	}
	if opts.Commit == "" {
		opts.Commit = testCommit
	}
	if opts.Files == nil {
		opts.Files = testFiles()
	}
	srv := hubtest.NewServer(opts)
	t.Cleanup(srv.Close)
	return &fixture{hub: srv, files: opts.Files, cache: t.TempDir(), logBuf: &syncbuf.Buffer{}}
}

// client builds a client for the fixture; edit adjusts its options.
func (fx *fixture) client(t *testing.T, edit func(*Options)) *Client {
	t.Helper()
	opts := Options{
		Endpoint:     fx.hub.URL(),
		CacheDir:     fx.cache,
		HTTPClient:   fx.hub.Client(),
		Logger:       slog.New(slog.NewTextHandler(fx.logBuf, nil)),
		RetryBackoff: time.Millisecond,
	}
	if edit != nil {
		edit(&opts)
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (fx *fixture) data(path string) []byte {
	for _, f := range fx.files {
		if f.Path == path {
			return f.Data
		}
	}
	return nil
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// checkSnapshot asserts that dir holds exactly the wanted files of the
// fixture, as relative symlinks to blobs named by etag.
func checkSnapshot(t *testing.T, fx *fixture, dir string, want func(string) bool) {
	t.Helper()
	if wantDir := filepath.Join(fx.cache, "models--acme--tiny-llm-onnx", "snapshots", testCommit); dir != wantDir {
		t.Fatalf("snapshot dir = %s, want %s", dir, wantDir)
	}
	for _, f := range fx.files {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		got, err := os.ReadFile(p)
		if !want(f.Path) {
			if err == nil {
				t.Errorf("%s is in the snapshot but was not selected", f.Path)
			}
			continue
		}
		if err != nil {
			t.Errorf("reading %s: %v", f.Path, err)
			continue
		}
		if !bytes.Equal(got, f.Data) {
			t.Errorf("%s: contents differ (%d bytes, want %d)", f.Path, len(got), len(f.Data))
		}
		target, err := os.Readlink(p)
		if err != nil {
			t.Errorf("%s is not a symlink: %v", f.Path, err)
			continue
		}
		etag := hubtest.GitBlobID(f.Data)
		if f.LFS {
			etag = hubtest.SHA256(f.Data)
		}
		depth := strings.Count(f.Path, "/")
		wantTarget := strings.Repeat("../", depth+2) + "blobs/" + etag
		if filepath.ToSlash(target) != wantTarget {
			t.Errorf("%s -> %s, want %s", f.Path, target, wantTarget)
		}
	}
	ref, err := os.ReadFile(filepath.Join(fx.cache, "models--acme--tiny-llm-onnx", "refs", "main"))
	if err != nil || string(ref) != testCommit {
		t.Errorf("refs/main = %q, %v; want %s", ref, err, testCommit)
	}
}

func TestSnapshotDownload(t *testing.T) {
	tests := []struct {
		name         string
		token        string
		cdnElsewhere bool
		include      func(string) bool
	}{
		{name: "variant folder", include: cpuOnly},
		{name: "whole repo", include: nil},
		{name: "gated repo with token", token: testToken, include: cpuOnly},
		{name: "gated repo, CDN on another host", token: testToken, cdnElsewhere: true, include: cpuOnly},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, hubtest.Options{Token: tt.token, CrossHostCDN: tt.cdnElsewhere})
			c := fx.client(t, func(o *Options) { o.Token = tt.token })
			dir, err := c.Snapshot(testContext(t), testRepo, "main", tt.include)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.include
			if want == nil {
				want = func(string) bool { return true }
			}
			checkSnapshot(t, fx, dir, want)
			cdnRequests := 0
			for _, r := range fx.hub.Requests() {
				if strings.HasPrefix(r.Path, "/cdn/") {
					cdnRequests++
					// The token stays with the endpoint's host.
					if tt.cdnElsewhere && r.Authorization != "" {
						t.Errorf("the CDN on another host got Authorization %q", r.Authorization)
					}
					continue
				}
				if wantAuth := "Bearer " + tt.token; tt.token != "" && r.Authorization != wantAuth {
					t.Errorf("%s carried Authorization %q", r.Path, r.Authorization)
				}
				if tt.token == "" && r.Authorization != "" {
					t.Errorf("%s carried Authorization without a token", r.Path)
				}
			}
			if cdnRequests == 0 {
				t.Error("no download went through the CDN redirect")
			}
			if strings.Contains(fx.logBuf.String(), testToken) {
				t.Error("the token appears in the log")
			}
		})
	}
}

func TestSnapshotSlashedRevision(t *testing.T) {
	const pr = "refs/pr/1"
	fx := newFixture(t, hubtest.Options{Branches: []string{pr}})
	dir, err := fx.client(t, nil).Snapshot(testContext(t), testRepo, pr, cpuOnly)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(dir) != testCommit {
		t.Errorf("snapshot dir = %s, want the commit's", dir)
	}
	ref, err := os.ReadFile(filepath.Join(fx.cache, "models--acme--tiny-llm-onnx", "refs", "refs", "pr", "1"))
	if err != nil || string(ref) != testCommit {
		t.Errorf("refs/refs/pr/1 = %q, %v; want %s", ref, err, testCommit)
	}
	offline := fx.client(t, func(o *Options) { o.Offline = true })
	if again, err := offline.Snapshot(testContext(t), testRepo, pr, cpuOnly); err != nil || again != dir {
		t.Errorf("offline Snapshot = %s, %v; want %s", again, err, dir)
	}
}

func TestSnapshotUsesCache(t *testing.T) {
	fx := newFixture(t, hubtest.Options{})
	ctx := testContext(t)
	if _, err := fx.client(t, nil).Snapshot(ctx, testRepo, "", cpuOnly); err != nil {
		t.Fatal(err)
	}
	first := len(fx.hub.Requests())

	tests := []struct {
		name         string
		offline      bool
		revision     string
		wantRequests int
	}{
		// Online, only the listing is asked for; nothing is downloaded again.
		{name: "online", revision: "main", wantRequests: 1},
		{name: "offline branch", offline: true, revision: "main", wantRequests: 0},
		{name: "offline commit", offline: true, revision: testCommit, wantRequests: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(fx.hub.Requests())
			c := fx.client(t, func(o *Options) { o.Offline = tt.offline })
			dir, err := c.Snapshot(ctx, testRepo, tt.revision, cpuOnly)
			if err != nil {
				t.Fatal(err)
			}
			checkSnapshot(t, fx, dir, cpuOnly)
			if got := len(fx.hub.Requests()) - before; got != tt.wantRequests {
				t.Errorf("requests = %d, want %d (first download took %d)", got, tt.wantRequests, first)
			}
		})
	}
}

func TestSnapshotResume(t *testing.T) {
	const big = "cpu/model.onnx.data"
	tests := []struct {
		name string
		// attempts is MaxAttempts of the first client; 1 makes the first
		// Snapshot fail and leave the partial file for a second run.
		attempts int
		cut      int64
	}{
		{name: "within one run", attempts: 5, cut: 100 << 10},
		{name: "across runs", attempts: 1, cut: 123457},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, hubtest.Options{})
			size := int64(len(fx.data(big)))
			fx.hub.CutAfter(big, tt.cut)
			ctx := testContext(t)
			dir, err := fx.client(t, func(o *Options) { o.MaxAttempts = tt.attempts }).Snapshot(ctx, testRepo, "main", cpuOnly)
			if tt.attempts == 1 {
				if err == nil {
					t.Fatal("Snapshot succeeded through a cut connection with one attempt")
				}
				part := filepath.Join(fx.cache, "models--acme--tiny-llm-onnx", "blobs", hubtest.SHA256(fx.data(big))+".incomplete")
				if st, err := os.Stat(part); err != nil || st.Size() != tt.cut {
					t.Fatalf("partial file after the cut: %v, %v; want %d bytes", st, err, tt.cut)
				}
				dir, err = fx.client(t, nil).Snapshot(ctx, testRepo, "main", cpuOnly)
			}
			if err != nil {
				t.Fatal(err)
			}
			checkSnapshot(t, fx, dir, cpuOnly)
			var ranges []string
			for _, r := range fx.hub.Requests() {
				if r.Range != "" {
					ranges = append(ranges, r.Range)
				}
			}
			// The range is repeated on the resolve request and the CDN
			// request it redirects to.
			want := "bytes=" + strconv.FormatInt(tt.cut, 10) + "-"
			if len(ranges) == 0 || ranges[len(ranges)-1] != want {
				t.Errorf("Range headers = %q, want the last to be %q", ranges, want)
			}
			if got := fx.hub.BodyBytes(big); got != size {
				t.Errorf("bytes served for %s = %d, want exactly %d (file size)", big, got, size)
			}
		})
	}
}

func TestSnapshotStall(t *testing.T) {
	const big = "cpu/model.onnx.data"
	tests := []struct {
		name         string
		stallTimeout time.Duration
		// cancelOnStall cancels the caller's context once the server stalls.
		cancelOnStall bool
		wantErr       error
	}{
		{name: "stalled attempt is resumed", stallTimeout: 50 * time.Millisecond},
		{name: "caller's cancel ends the download", stallTimeout: time.Minute, cancelOnStall: true, wantErr: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, hubtest.Options{})
			const stallAt = 64 << 10
			stalled := fx.hub.StallAfter(big, stallAt)
			ctx, cancel := context.WithCancel(testContext(t))
			defer cancel()
			if tt.cancelOnStall {
				go func() {
					select {
					case <-stalled:
						cancel()
					case <-ctx.Done():
					}
				}()
			}
			c := fx.client(t, func(o *Options) { o.StallTimeout = tt.stallTimeout })
			dir, err := c.Snapshot(ctx, testRepo, "main", cpuOnly)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Snapshot = %v, want %v", err, tt.wantErr)
				}
				// The client may not have read all the server sent before
				// the cancel; what it wrote is kept and resumed.
				part := filepath.Join(fx.cache, "models--acme--tiny-llm-onnx", "blobs", hubtest.SHA256(fx.data(big))+".incomplete")
				st, err := os.Stat(part)
				if err != nil || st.Size() > stallAt {
					t.Fatalf("partial file kept for resuming: %v, %v; want up to %d bytes", st, err, stallAt)
				}
				dir, err = fx.client(t, nil).Snapshot(testContext(t), testRepo, "main", cpuOnly)
				if err != nil {
					t.Fatal(err)
				}
				checkSnapshot(t, fx, dir, cpuOnly)
				if got, want := fx.hub.BodyBytes(big), stallAt+int64(len(fx.data(big)))-st.Size(); got != want {
					t.Errorf("bytes served = %d, want %d (resumed from byte %d)", got, want, st.Size())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkSnapshot(t, fx, dir, cpuOnly)
			if !strings.Contains(fx.logBuf.String(), "no data for 50ms") {
				t.Errorf("the retry does not name the stall:\n%s", fx.logBuf.String())
			}
		})
	}
}

func TestSnapshotBadPartialFile(t *testing.T) {
	const big = "cpu/model.onnx.data"
	fx := newFixture(t, hubtest.Options{})
	data := fx.data(big)
	blobs := filepath.Join(fx.cache, "models--acme--tiny-llm-onnx", "blobs")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	const garbage = 1000
	if err := os.WriteFile(filepath.Join(blobs, hubtest.SHA256(data)+".incomplete"), make([]byte, garbage), 0o644); err != nil {
		t.Fatal(err)
	}
	dir, err := fx.client(t, nil).Snapshot(testContext(t), testRepo, "main", cpuOnly)
	if err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, fx, dir, cpuOnly)
	// The resumed transfer, then the whole file once more.
	if got, want := fx.hub.BodyBytes(big), int64(2*len(data)-garbage); got != want {
		t.Errorf("bytes served = %d, want %d", got, want)
	}
}

func TestSnapshotCorrupt(t *testing.T) {
	tests := []struct{ name, path string }{
		{name: "lfs file (sha256)", path: "cpu/model.onnx.data"},
		{name: "git file (blob id)", path: "cpu/tokenizer.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, hubtest.Options{})
			fx.hub.Corrupt(tt.path)
			_, err := fx.client(t, nil).Snapshot(testContext(t), testRepo, "main", cpuOnly)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Snapshot = %v, want ErrCorrupt", err)
			}
			storage := filepath.Join(fx.cache, "models--acme--tiny-llm-onnx")
			if _, err := os.Lstat(filepath.Join(storage, "snapshots", testCommit, filepath.FromSlash(tt.path))); err == nil {
				t.Errorf("%s is in the snapshot after a corrupt download", tt.path)
			}
			blobs, _ := os.ReadDir(filepath.Join(storage, "blobs"))
			for _, b := range blobs {
				if strings.HasSuffix(b.Name(), ".incomplete") {
					t.Errorf("partial file %s left behind", b.Name())
				}
			}
			if _, err := os.Stat(filepath.Join(storage, "refs", "main")); err == nil {
				t.Error("refs/main written although the snapshot is incomplete")
			}
		})
	}
}

func TestSnapshotErrors(t *testing.T) {
	tests := []struct {
		name      string
		server    hubtest.Options
		token     string
		offline   bool
		repo, rev string
		include   func(string) bool
		want      error
		// wantText must appear in the message.
		wantText string
	}{
		{name: "gated without token", server: hubtest.Options{Token: testToken}, want: ErrUnauthorized, wantText: "HF_TOKEN"},
		{name: "gated with wrong token", server: hubtest.Options{Token: testToken}, token: "hf_wrong_token", want: ErrUnauthorized, wantText: "HF_TOKEN"},
		{name: "unknown repo", repo: "acme/nope", want: ErrNotFound, wantText: "RepoNotFound"},
		{name: "unknown revision", rev: "v9", want: ErrNotFound, wantText: "RevisionNotFound"},
		{name: "nothing selected", include: func(string) bool { return false }, want: ErrNotFound, wantText: "matches"},
		{name: "offline without cache", offline: true, want: ErrOffline, wantText: "main"},
		{name: "bad repo id", repo: "no-slash", wantText: "org/name"},
		{name: "bad revision", rev: "../x", wantText: "revision"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, tt.server)
			c := fx.client(t, func(o *Options) { o.Token = tt.token; o.Offline = tt.offline })
			repo, rev := tt.repo, tt.rev
			if repo == "" {
				repo = testRepo
			}
			if rev == "" {
				rev = "main"
			}
			include := tt.include
			if include == nil {
				include = cpuOnly
			}
			_, err := c.Snapshot(testContext(t), repo, rev, include)
			if err == nil {
				t.Fatal("Snapshot succeeded")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Snapshot = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not mention %q", err, tt.wantText)
			}
			if strings.Contains(err.Error(), testToken) || strings.Contains(err.Error(), "hf_wrong_token") {
				t.Errorf("error %q shows the token", err)
			}
			if tt.offline && len(fx.hub.Requests()) != 0 {
				t.Errorf("offline client made %d requests", len(fx.hub.Requests()))
			}
		})
	}
}

func TestSnapshotRetries(t *testing.T) {
	tests := []struct {
		name     string
		failures int
		wantErr  bool
	}{
		{name: "transient 503s", failures: 2},
		{name: "attempts spent", failures: 5, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, hubtest.Options{})
			fx.hub.FailNext(testRepo, tt.failures)
			fx.hub.FailNext("cpu/tokenizer.json", tt.failures)
			dir, err := fx.client(t, func(o *Options) { o.MaxAttempts = 3 }).Snapshot(testContext(t), testRepo, "main", cpuOnly)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "3 attempts") {
					t.Fatalf("Snapshot = %v, want giving up after 3 attempts", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkSnapshot(t, fx, dir, cpuOnly)
		})
	}
}

func TestSnapshotCanceled(t *testing.T) {
	fx := newFixture(t, hubtest.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := fx.client(t, nil).Snapshot(ctx, testRepo, "main", cpuOnly)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Snapshot = %v, want context.Canceled", err)
	}
}

// fakeClock advances one second on every reading, so every progress update
// is due.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

func TestProgressOutput(t *testing.T) {
	tests := []struct {
		name     string
		terminal bool
		// wantBar and wantLog must appear in the bar output and the log.
		wantBar []string
		wantLog []string
	}{
		{
			name:     "terminal",
			terminal: true,
			wantBar:  []string{"\rcpu/model.onnx.data", "100% [########################] 300.0 KiB / 300.0 KiB", "\n"},
			wantLog:  []string{"msg=downloading", "msg=downloaded"},
		},
		{
			name:    "log",
			wantLog: []string{"msg=downloading", `msg="download progress" file=cpu/model.onnx.data percent=`, "total_bytes=307200", "msg=downloaded repo=acme/tiny-llm-onnx file=cpu/model.onnx.data bytes=307200"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, hubtest.Options{})
			var bar bytes.Buffer
			c := fx.client(t, func(o *Options) {
				o.Progress = &bar
				o.ProgressIsTerminal = tt.terminal
				o.ProgressInterval = time.Second
			})
			clock := &fakeClock{t: time.Unix(1e9, 0)}
			c.now = clock.now
			if _, err := c.Snapshot(testContext(t), testRepo, "main", cpuOnly); err != nil {
				t.Fatal(err)
			}
			for _, want := range tt.wantBar {
				if !strings.Contains(bar.String(), want) {
					t.Errorf("bar output lacks %q:\n%q", want, bar.String())
				}
			}
			if !tt.terminal && bar.Len() != 0 {
				t.Errorf("bar drawn on a non-terminal: %q", bar.String())
			}
			log := fx.logBuf.String()
			for _, want := range tt.wantLog {
				if !strings.Contains(log, want) {
					t.Errorf("log lacks %q:\n%s", want, log)
				}
			}
			if tt.terminal && strings.Contains(log, "download progress") {
				t.Errorf("progress logged although a bar is drawn:\n%s", log)
			}
		})
	}
}

func TestRenderBar(t *testing.T) {
	tests := []struct {
		name        string
		file        string
		done, total int64
		rate        float64
		want        string
	}{
		{
			name: "start", file: "a.onnx", done: 0, total: 2 << 30, rate: 0,
			want: "a.onnx                             0% [                        ] 0 B / 2.0 GiB  0 B/s",
		},
		{
			name: "half", file: "model.onnx.data", done: 1 << 30, total: 2 << 30, rate: 12.5 * (1 << 20),
			want: "model.onnx.data                   50% [############            ] 1.0 GiB / 2.0 GiB  12.5 MiB/s",
		},
		{
			name: "long name keeps its end", file: "cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4/x.onnx.data", done: 10, total: 10, rate: 1023,
			want: "…lock-32-acc-level-4/x.onnx.data 100% [########################] 10 B / 10 B  1023 B/s",
		},
		{
			name: "empty file", file: "e", done: 0, total: 0,
			want: "e                                100% [########################] 0 B / 0 B  0 B/s",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := renderBar(tt.file, tt.done, tt.total, tt.rate); got != tt.want {
				t.Errorf("renderBar = %q\n                 want %q", got, tt.want)
			}
		})
	}
}

func TestDefaultCacheDir(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{name: "HF_HUB_CACHE wins", env: map[string]string{"HF_HUB_CACHE": "/c", "HF_HOME": "/h", "HOME": "/home/u"}, want: "/c"},
		{name: "legacy HUGGINGFACE_HUB_CACHE", env: map[string]string{"HUGGINGFACE_HUB_CACHE": "/legacy", "HF_HOME": "/h"}, want: "/legacy"},
		{name: "HF_HOME", env: map[string]string{"HF_HOME": "/h", "HOME": "/home/u"}, want: "/h/hub"},
		{name: "HF_HOME with tilde", env: map[string]string{"HF_HOME": "~/hf", "HOME": "/home/u"}, want: "/home/u/hf/hub"},
		{name: "XDG_CACHE_HOME", env: map[string]string{"XDG_CACHE_HOME": "/x", "HOME": "/home/u"}, want: "/x/huggingface/hub"},
		{name: "HOME", env: map[string]string{"HOME": "/home/u"}, want: "/home/u/.cache/huggingface/hub"},
		{name: "nothing", env: map[string]string{}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := DefaultCacheDir(mapEnv(tt.env)); got != tt.want {
				t.Errorf("DefaultCacheDir(%v) = %q, want %q", tt.env, got, tt.want)
			}
		})
	}
}

func TestDefaultToken(t *testing.T) {
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, "token"), []byte("hf_from_file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{name: "HF_TOKEN", env: map[string]string{"HF_TOKEN": "hf_a", "HUGGING_FACE_HUB_TOKEN": "hf_b", "HF_HOME": home}, want: "hf_a"},
		{name: "legacy variable", env: map[string]string{"HUGGING_FACE_HUB_TOKEN": "hf_b", "HF_HOME": home}, want: "hf_b"},
		{name: "token file", env: map[string]string{"HF_HOME": home}, want: "hf_from_file"},
		{name: "HF_TOKEN_PATH", env: map[string]string{"HF_TOKEN_PATH": filepath.Join(home, "token")}, want: "hf_from_file"},
		{name: "none", env: map[string]string{"HF_HOME": filepath.Join(home, "missing")}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := DefaultToken(mapEnv(tt.env)); got != tt.want {
				t.Errorf("DefaultToken = %q, want %q", got, tt.want)
			}
		})
	}
}

func mapEnv(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestNewOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "defaults", opts: Options{CacheDir: "/c"}},
		{name: "no cache dir", opts: Options{}, wantErr: "CacheDir"},
		{name: "bad endpoint", opts: Options{CacheDir: "/c", Endpoint: "ftp://x"}, wantErr: "endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New = %v, want an error about %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.endpoint.String() != DefaultEndpoint || c.maxAttempts != defaultMaxAttempts ||
				c.backoff != defaultRetryBackoff || c.interval != defaultProgressInterval || c.stallTimeout != defaultStallTimeout {
				t.Errorf("defaults not applied: %+v", c)
			}
		})
	}
}

func TestValidatePaths(t *testing.T) {
	tests := []struct {
		path string
		ok   bool
	}{
		{"a.json", true},
		{"cuda/cuda-fp16/model.onnx", true},
		{"", false},
		{"/etc/passwd", false},
		{"../x", false},
		{"a/../../x", false},
		{"a//b", false},
		{"a/./b", false},
		{"a\\b", false},
		{".", false},
		{"..", false},
	}
	for _, tt := range tests {
		if err := validateFilePath(tt.path); (err == nil) != tt.ok {
			t.Errorf("validateFilePath(%q) = %v, want ok=%v", tt.path, err, tt.ok)
		}
	}
	repos := []struct {
		repo string
		ok   bool
	}{
		{"microsoft/Phi-3-mini-4k-instruct-onnx", true},
		{"a/b.c_d", true},
		{"a", false},
		{"a/b/c", false},
		{"../b", false},
		{"a/..", false},
		{"a--b/c", false},
		{"a/b c", false},
	}
	for _, tt := range repos {
		if err := validateRepo(tt.repo); (err == nil) != tt.ok {
			t.Errorf("validateRepo(%q) = %v, want ok=%v", tt.repo, err, tt.ok)
		}
	}
}

func TestParseRepoInfo(t *testing.T) {
	sha := strings.Repeat("ab", 32)
	blob := strings.Repeat("cd", 20)
	tests := []struct {
		name    string
		json    string
		want    []repoFile
		wantErr bool
	}{
		{
			name: "git and lfs files",
			json: `{"sha":"` + testCommit + `","siblings":[{"rfilename":"a.json","size":3,"blobId":"` + blob + `"},` +
				`{"rfilename":"w/m.onnx.data","size":134,"blobId":"` + blob + `","lfs":{"sha256":"` + sha + `","size":9000,"pointerSize":134}}]}`,
			want: []repoFile{{Path: "a.json", Size: 3, BlobID: blob}, {Path: "w/m.onnx.data", Size: 9000, BlobID: blob, SHA256: sha}},
		},
		{name: "no blobs", json: `{"sha":"` + testCommit + `","siblings":[{"rfilename":"a.json"}]}`, wantErr: true},
		{name: "bad commit", json: `{"sha":"main","siblings":[]}`, wantErr: true},
		{name: "escaping path", json: `{"sha":"` + testCommit + `","siblings":[{"rfilename":"../x","size":1,"blobId":"` + blob + `"}]}`, wantErr: true},
		{name: "bad sha256", json: `{"sha":"` + testCommit + `","siblings":[{"rfilename":"x","size":1,"lfs":{"sha256":"zz","size":1}}]}`, wantErr: true},
		{name: "negative size", json: `{"sha":"` + testCommit + `","siblings":[{"rfilename":"x","size":-1,"blobId":"` + blob + `"}]}`, wantErr: true},
		{name: "not json", json: `<html>`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := parseRepoInfo([]byte(tt.json))
			if tt.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("parseRepoInfo = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if info.Commit != testCommit || len(info.Files) != len(tt.want) {
				t.Fatalf("parseRepoInfo = %+v", info)
			}
			for i := range tt.want {
				if info.Files[i] != tt.want[i] {
					t.Errorf("file %d = %+v, want %+v", i, info.Files[i], tt.want[i])
				}
			}
		})
	}
}

func FuzzParseRepoInfo(f *testing.F) {
	f.Add([]byte(`{"sha":"` + testCommit + `","siblings":[{"rfilename":"a/b","size":3,"blobId":"` + strings.Repeat("cd", 20) + `"}]}`))
	f.Add([]byte(`{"sha":"` + testCommit + `","siblings":[{"rfilename":"x","lfs":{"sha256":"` + strings.Repeat("ab", 32) + `","size":1}}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := parseRepoInfo(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if !isCommit(info.Commit) {
			t.Fatalf("accepted commit %q", info.Commit)
		}
		for _, f := range info.Files {
			if validateFilePath(f.Path) != nil || f.Size < 0 || !(isHex(f.etag(), 40) || isHex(f.etag(), 64)) {
				t.Fatalf("accepted file %+v", f)
			}
		}
	})
}

// BenchmarkSnapshotDownload measures a fresh download of one 32 MiB LFS
// file from the local fake Hub: hashing, writing and the HTTP path.
func BenchmarkSnapshotDownload(b *testing.B) {
	data := make([]byte, 32<<20)
	rand.NewChaCha8([32]byte{3, 4}).Read(data)
	srv := hubtest.NewServer(hubtest.Options{Repo: testRepo, Commit: testCommit, Files: []hubtest.File{{Path: "w.bin", Data: data, LFS: true}}})
	defer srv.Close()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		c, err := New(Options{Endpoint: srv.URL(), CacheDir: b.TempDir(), HTTPClient: srv.Client()})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Snapshot(b.Context(), testRepo, "main", nil); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRedirectDropsToken(t *testing.T) {
	c, err := New(Options{Endpoint: "https://hub.example.test", CacheDir: t.TempDir(), Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		target   string
		wantAuth bool
	}{
		{"https://hub.example.test/acme/x/resolve/main/f", true},
		// net/http would keep the header for a subdomain.
		{"https://cdn-lfs.hub.example.test/blob", false},
		{"https://cdn.other.test/blob", false},
	}
	for _, tt := range tests {
		req, err := http.NewRequest(http.MethodGet, tt.target, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		if err := c.http.CheckRedirect(req, []*http.Request{req}); err != nil {
			t.Fatal(err)
		}
		if got := req.Header.Get("Authorization") != ""; got != tt.wantAuth {
			t.Errorf("redirect to %s keeps Authorization = %v, want %v", tt.target, got, tt.wantAuth)
		}
	}
}

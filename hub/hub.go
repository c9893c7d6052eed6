// Package hub finds or downloads the files of a Hugging Face Hub model
// repository into the Hugging Face cache layout, so that files fetched by
// the Python tools are reused and ours are reused by them:
//
//	<cache>/models--<org>--<name>/blobs/<etag>             file contents
//	<cache>/models--<org>--<name>/blobs/<etag>.incomplete  a download in progress, resumed with Range
//	<cache>/models--<org>--<name>/snapshots/<commit>/<path> relative symlinks into blobs
//	<cache>/models--<org>--<name>/refs/<revision>          the commit a branch or tag resolved to
//
// The etag of a file stored with Git LFS is its sha256; of any other file, its
// git blob id. Every download is checked against both the size and that hash
// before it is renamed into blobs, so blobs only ever hold verified contents.
//
// A Client is safe for concurrent use by several goroutines, but two
// downloads of the same file at the same time (from one process or two)
// would share one .incomplete file; callers resolve one model at a time.
// Snapshot downloads files one after another and blocks until done or until
// its context ends. The package reads no environment variables: cmd passes
// DefaultCacheDir and DefaultToken results in Options.
package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultEndpoint is the public Hub, used when Options.Endpoint is empty.
const DefaultEndpoint = "https://huggingface.co"

// DefaultRevision is the branch used when a revision is empty.
const DefaultRevision = "main"

var (
	// ErrNotFound means the Hub has no such repository, revision or file, or
	// that no file of the repository matched the caller's selection.
	ErrNotFound = errors.New("hub: not found")
	// ErrUnauthorized means the Hub refused access (401/403): the repository
	// is private or gated and needs a token that has been granted access.
	ErrUnauthorized = errors.New("hub: access denied; set HF_TOKEN to a Hugging Face token that has access to the repository")
	// ErrCorrupt means a downloaded file did not match the size or hash the
	// Hub listed for it. The partial file has been deleted.
	ErrCorrupt = errors.New("hub: downloaded file does not match its listed size or hash")
	// ErrOffline means the files are not in the cache and the client may not
	// use the network.
	ErrOffline = errors.New("hub: offline mode and the files are not in the cache")
	// ErrNotCached means the cache has no snapshot for the revision.
	ErrNotCached = errors.New("hub: revision not in the cache")
	// ErrMalformed means the Hub's answer could not be understood, or
	// named a file path that would leave the snapshot directory.
	ErrMalformed = errors.New("hub: malformed response")
)

// Options configure a Client. The zero value of every field but CacheDir
// selects its documented default.
type Options struct {
	// Endpoint is the Hub's base URL. Default DefaultEndpoint.
	Endpoint string
	// Token is sent as "Authorization: Bearer <token>" to the endpoint's
	// host only, never to the hosts it redirects downloads to (CDNs).
	// Default: none. It never appears in errors or logs.
	Token string
	// CacheDir is the cache root holding models--org--name folders.
	// Required; see DefaultCacheDir.
	CacheDir string
	// HTTPClient performs the requests. Default: a client with the
	// default transport, a 60 s response-header timeout and no overall
	// timeout (downloads take as long as they take; see StallTimeout).
	HTTPClient *http.Client
	// Logger receives download start, progress (when not on a terminal),
	// retry and completion records. Default: discard.
	Logger *slog.Logger
	// Progress receives a progress bar when ProgressIsTerminal is true.
	// Default nil: progress is logged instead.
	Progress io.Writer
	// ProgressIsTerminal says Progress is a terminal, where a bar redrawn
	// in place is readable. Otherwise progress goes to Logger.
	ProgressIsTerminal bool
	// ProgressInterval is the time between progress log lines. Default 10 s.
	ProgressInterval time.Duration
	// Offline forbids network access: Snapshot answers from the cache or
	// fails with ErrOffline.
	Offline bool
	// MaxAttempts bounds the tries of one request or one file download
	// (server errors 5xx/429, network errors, cut connections). Default 5.
	MaxAttempts int
	// RetryBackoff is the wait before the second attempt; it doubles for
	// each later one, up to 30 s. Default 1 s.
	RetryBackoff time.Duration
	// StallTimeout aborts (and then retries) a download that received no
	// bytes for this long. Default 60 s.
	StallTimeout time.Duration
}

const (
	defaultProgressInterval = 10 * time.Second
	defaultMaxAttempts      = 5
	defaultRetryBackoff     = time.Second
	maxRetryBackoff         = 30 * time.Second
	defaultStallTimeout     = time.Minute
	defaultHeaderTimeout    = time.Minute
)

// Client talks to one Hub endpoint and one cache directory.
type Client struct {
	endpoint     *url.URL
	token        string
	cacheDir     string
	http         *http.Client
	log          *slog.Logger
	progress     io.Writer
	isTerminal   bool
	interval     time.Duration
	offline      bool
	maxAttempts  int
	backoff      time.Duration
	stallTimeout time.Duration
	// now is the clock for progress output; tests replace it.
	now func() time.Time
}

// New checks opts and builds a Client. It does not touch the network or
// the cache directory.
func New(opts Options) (*Client, error) {
	if opts.CacheDir == "" {
		return nil, errors.New("hub: Options.CacheDir is required")
	}
	endpoint := opts.Endpoint
	if endpoint == "" {
		endpoint = DefaultEndpoint
	}
	u, err := url.Parse(strings.TrimRight(endpoint, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("hub: endpoint %q is not an http(s) URL", endpoint)
	}
	c := &Client{
		endpoint:     u,
		token:        opts.Token,
		cacheDir:     opts.CacheDir,
		http:         opts.HTTPClient,
		log:          opts.Logger,
		progress:     opts.Progress,
		isTerminal:   opts.ProgressIsTerminal && opts.Progress != nil,
		interval:     opts.ProgressInterval,
		offline:      opts.Offline,
		maxAttempts:  opts.MaxAttempts,
		backoff:      opts.RetryBackoff,
		stallTimeout: opts.StallTimeout,
		now:          time.Now,
	}
	if c.http == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.ResponseHeaderTimeout = defaultHeaderTimeout
		c.http = &http.Client{Transport: tr}
	}
	c.http = c.withTokenKeptHome(c.http)
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.interval <= 0 {
		c.interval = defaultProgressInterval
	}
	if c.maxAttempts <= 0 {
		c.maxAttempts = defaultMaxAttempts
	}
	if c.backoff <= 0 {
		c.backoff = defaultRetryBackoff
	}
	if c.stallTimeout <= 0 {
		c.stallTimeout = defaultStallTimeout
	}
	return c, nil
}

// maxRedirects is the redirect limit, the same as net/http's default.
const maxRedirects = 10

// withTokenKeptHome returns a copy of hc that removes the token from
// redirects that leave the endpoint's host. net/http keeps it for
// subdomains, and download redirects go to CDN subdomains that must not
// see it.
func (c *Client) withTokenKeptHome(hc *http.Client) *http.Client {
	cp := *hc
	next := hc.CheckRedirect
	cp.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Host != c.endpoint.Host {
			req.Header.Del("Authorization")
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= maxRedirects {
			return fmt.Errorf("stopped after %d redirects", maxRedirects)
		}
		return nil
	}
	return &cp
}

// CacheDir returns the cache root the client reads and writes.
func (c *Client) CacheDir() string { return c.cacheDir }

// Offline reports whether the client is forbidden to use the network.
func (c *Client) Offline() bool { return c.offline }

// DefaultCacheDir returns the cache root the Hugging Face tools use, from
// the environment read through getenv: $HF_HUB_CACHE, else
// $HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub, else
// $XDG_CACHE_HOME/huggingface/hub, else $HOME/.cache/huggingface/hub. A
// leading "~/" is expanded with $HOME. It returns "" when none is set.
func DefaultCacheDir(getenv func(string) string) string {
	if v := first(getenv, "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"); v != "" {
		return expandHome(v, getenv)
	}
	if home := hfHome(getenv); home != "" {
		return filepath.Join(home, "hub")
	}
	return ""
}

// DefaultToken returns the token the Hugging Face tools would use: $HF_TOKEN,
// else $HUGGING_FACE_HUB_TOKEN, else the contents of the file at
// $HF_TOKEN_PATH or $HF_HOME/token (written by "huggingface-cli login").
// It returns "" when there is none.
func DefaultToken(getenv func(string) string) string {
	if v := first(getenv, "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"); v != "" {
		return strings.TrimSpace(v)
	}
	path := expandHome(getenv("HF_TOKEN_PATH"), getenv)
	if path == "" {
		home := hfHome(getenv)
		if home == "" {
			return ""
		}
		path = filepath.Join(home, "token")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func hfHome(getenv func(string) string) string {
	if v := getenv("HF_HOME"); v != "" {
		return expandHome(v, getenv)
	}
	if v := getenv("XDG_CACHE_HOME"); v != "" {
		return filepath.Join(expandHome(v, getenv), "huggingface")
	}
	if v := getenv("HOME"); v != "" {
		return filepath.Join(v, ".cache", "huggingface")
	}
	return ""
}

func first(getenv func(string) string, names ...string) string {
	for _, n := range names {
		if v := getenv(n); v != "" {
			return v
		}
	}
	return ""
}

func expandHome(p string, getenv func(string) string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home := getenv("HOME"); home != "" {
			return filepath.Join(home, p[1:])
		}
	}
	return p
}

// Snapshot makes the files of repo at revision (DefaultRevision when empty)
// that include selects (all files when include is nil) present in the
// cache, and returns the snapshot directory snapshots/<commit>.
//
// Online, it asks the Hub for the listing (one small request), downloads the
// selected files the cache lacks, largest first, verifying each, and then
// points refs/<revision> at the commit. Files already in the cache cost no
// transfer. Offline, it returns the cached snapshot the revision resolves
// to, or an error wrapping ErrOffline and ErrNotCached; the caller checks
// that the files it needs are there.
//
// Errors wrap ErrNotFound, ErrUnauthorized, ErrCorrupt, ErrOffline,
// ErrMalformed or the context's error.
func (c *Client) Snapshot(ctx context.Context, repo, revision string, include func(path string) bool) (string, error) {
	if revision == "" {
		revision = DefaultRevision
	}
	if err := validateRepo(repo); err != nil {
		return "", err
	}
	if err := validateRevision(revision); err != nil {
		return "", err
	}
	if c.offline {
		dir, err := c.CachedSnapshot(repo, revision)
		if err != nil {
			return "", fmt.Errorf("%w: %w", ErrOffline, err)
		}
		return dir, nil
	}
	info, err := c.repoInfo(ctx, repo, revision)
	if err != nil {
		return "", err
	}
	wanted := info.selected(include)
	if len(wanted) == 0 {
		return "", fmt.Errorf("%w: no file of %s at %s matches the selection", ErrNotFound, repo, revision)
	}
	storage := c.repoDir(repo)
	snap := filepath.Join(storage, "snapshots", info.Commit)
	for _, f := range wanted {
		if err := c.ensureFile(ctx, repo, info.Commit, storage, f); err != nil {
			return "", err
		}
	}
	if revision != info.Commit {
		if err := writeRef(storage, revision, info.Commit); err != nil {
			return "", err
		}
	}
	return snap, nil
}

// CachedSnapshot returns the snapshot directory that revision (a commit, or
// a branch or tag recorded under refs/) has in the cache, without using the
// network, or an error wrapping ErrNotCached. It does not check which files
// the snapshot holds.
func (c *Client) CachedSnapshot(repo, revision string) (string, error) {
	if revision == "" {
		revision = DefaultRevision
	}
	if err := validateRepo(repo); err != nil {
		return "", err
	}
	if err := validateRevision(revision); err != nil {
		return "", err
	}
	storage := c.repoDir(repo)
	commit := revision
	if !isCommit(revision) {
		b, err := os.ReadFile(filepath.Join(storage, "refs", filepath.FromSlash(revision)))
		if err != nil {
			return "", fmt.Errorf("%w: %s at %s (no ref in %s)", ErrNotCached, repo, revision, c.cacheDir)
		}
		commit = strings.TrimSpace(string(b))
		if !isCommit(commit) {
			return "", fmt.Errorf("%w: %s at %s (the ref file holds %q, not a commit)", ErrNotCached, repo, revision, commit)
		}
	}
	dir := filepath.Join(storage, "snapshots", commit)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", fmt.Errorf("%w: %s at %s (no snapshot %s)", ErrNotCached, repo, revision, commit)
	}
	return dir, nil
}

// repoDir is the cache folder of a model repository: models--org--name.
func (c *Client) repoDir(repo string) string {
	return filepath.Join(c.cacheDir, "models--"+strings.ReplaceAll(repo, "/", "--"))
}

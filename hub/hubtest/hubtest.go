// Package hubtest is a fake Hugging Face Hub for tests: an httptest server
// that implements the listing API and the resolve route of one model
// repository, including the redirect of LFS files to a "CDN" path, Range
// requests, token checks, and injected faults (cut connections, corrupted
// bytes, server errors). It records every request.
//
// A Server is safe for concurrent use; faults may be changed between
// requests with the Set* methods.
package hubtest

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// File is one file of the fake repository.
type File struct {
	Path string
	Data []byte
	// LFS serves the file the way the Hub serves Git LFS files: listed with
	// lfs.sha256, and resolved by a redirect to the CDN path.
	LFS bool
}

// Options describe the fake repository.
type Options struct {
	// Repo is the repository id, e.g. "org/name".
	Repo string
	// Commit is the 40-hex commit every branch resolves to.
	Commit string
	// Branches are the revision names besides Commit that resolve to it.
	// Default ["main"].
	Branches []string
	Files    []File
	// CrossHostCDN redirects LFS downloads to the CDN path under the
	// name "localhost" instead of the server's IP address, so the client
	// sees another host.
	CrossHostCDN bool
	// Token, when set, must arrive as "Authorization: Bearer <Token>" on
	// the API and resolve routes; otherwise they answer 401 GatedRepo.
	Token string
}

// Request is one request the server received.
type Request struct {
	Method string
	// Path is the unescaped URL path.
	Path string
	// Range is the Range header, "" when none.
	Range string
	// Authorization is the Authorization header.
	Authorization string
	// BodyBytes is the number of body bytes the server wrote.
	BodyBytes int64
}

// Server is the running fake Hub.
type Server struct {
	opts  Options
	files map[string]File
	// sha256s and blobIDs hold each file's etags, computed once.
	sha256s, blobIDs map[string]string
	srv              *httptest.Server

	mu sync.Mutex // guards the fields below
	// requests are all requests so far, in arrival order.
	requests []Request
	// cutAfter cuts the connection of the next download of a path after
	// that many body bytes; the entry is removed when used.
	cutAfter map[string]int64
	// stallAfter makes the next download of a path stop sending after that
	// many body bytes and hold the connection open until the client
	// leaves; the entry is removed when used.
	stallAfter map[string]int64
	// stalled holds, per path, the channel StallAfter returned.
	stalled map[string]chan struct{}
	// corrupt makes downloads of a path serve one flipped byte.
	corrupt map[string]bool
	// failures answers the next n requests for a path with 503.
	failures map[string]int
}

// NewServer starts a fake Hub. Close it when done.
func NewServer(opts Options) *Server {
	if len(opts.Branches) == 0 {
		opts.Branches = []string{"main"}
	}
	s := &Server{
		opts:       opts,
		files:      map[string]File{},
		sha256s:    map[string]string{},
		blobIDs:    map[string]string{},
		cutAfter:   map[string]int64{},
		stallAfter: map[string]int64{},
		stalled:    map[string]chan struct{}{},
		corrupt:    map[string]bool{},
		failures:   map[string]int{},
	}
	for _, f := range opts.Files {
		s.files[f.Path] = f
		s.sha256s[f.Path] = SHA256(f.Data)
		s.blobIDs[f.Path] = GitBlobID(f.Data)
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.route))
	return s
}

// route dispatches by hand: the listing and resolve patterns overlap in
// ways http.ServeMux refuses to rank.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	if rest, ok := strings.CutPrefix(p, "/api/models/"); ok {
		// org/name/revision/rev: the revision may hold escaped slashes.
		parts := strings.SplitN(rest, "/", 4)
		if len(parts) == 4 && parts[2] == "revision" {
			r.SetPathValue("org", parts[0])
			r.SetPathValue("name", parts[1])
			r.SetPathValue("rev", parts[3])
			s.serveInfo(w, r)
			return
		}
	}
	if sha, ok := strings.CutPrefix(p, "/cdn/"); ok {
		r.SetPathValue("sha", sha)
		s.serveCDN(w, r)
		return
	}
	parts := strings.SplitN(strings.TrimPrefix(p, "/"), "/", 5)
	if len(parts) == 5 && parts[2] == "resolve" {
		r.SetPathValue("org", parts[0])
		r.SetPathValue("name", parts[1])
		r.SetPathValue("rev", parts[3])
		r.SetPathValue("path", parts[4])
		s.serveResolve(w, r)
		return
	}
	s.record(r)
	http.NotFound(w, r)
}

// URL is the endpoint to give the client.
func (s *Server) URL() string { return s.srv.URL }

// Client returns an HTTP client for the server whose connections Close
// shuts down.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// Close shuts the server down and closes its client's idle connections.
func (s *Server) Close() {
	s.srv.Client().CloseIdleConnections()
	s.srv.Close()
}

// CutAfter makes the next download of path end abruptly after n body bytes.
func (s *Server) CutAfter(path string, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cutAfter[path] = n
}

// StallAfter makes the next download of path send n body bytes and then
// nothing, keeping the connection open until the client gives up. The
// returned channel is closed once the stall has begun.
func (s *Server) StallAfter(path string, n int64) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stallAfter[path] = n
	s.stalled[path] = make(chan struct{})
	return s.stalled[path]
}

// Corrupt makes every download of path serve one wrong byte.
func (s *Server) Corrupt(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.corrupt[path] = true
}

// FailNext answers the next n requests for path (API listing: the repo id)
// with 503 Service Unavailable.
func (s *Server) FailNext(path string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures[path] = n
}

// Requests returns a copy of the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// BodyBytes is the number of body bytes served for downloads of path,
// counting both the resolve route and the CDN.
func (s *Server) BodyBytes(path string) int64 {
	sha := s.sha256s[path]
	var n int64
	for _, r := range s.Requests() {
		if strings.HasSuffix(r.Path, "/"+path) || (sha != "" && r.Path == "/cdn/"+sha) {
			n += r.BodyBytes
		}
	}
	return n
}

// SHA256 is the hex sha256 of data: an LFS file's etag.
func SHA256(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

// GitBlobID is the git object id of data: a non-LFS file's etag.
func GitBlobID(data []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(data))
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))
}

func (s *Server) record(r *http.Request) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, Request{
		Method: r.Method, Path: r.URL.Path, Range: r.Header.Get("Range"), Authorization: r.Header.Get("Authorization"),
	})
	return len(s.requests) - 1
}

func (s *Server) addBytes(i int, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests[i].BodyBytes += n
}

// takeFailure consumes one injected 503 for key.
func (s *Server) takeFailure(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failures[key] > 0 {
		s.failures[key]--
		return true
	}
	return false
}

// check answers the request itself and returns false when the repository,
// revision or token is wrong.
func (s *Server) check(w http.ResponseWriter, r *http.Request) bool {
	if r.PathValue("org")+"/"+r.PathValue("name") != s.opts.Repo {
		hubError(w, http.StatusNotFound, "RepoNotFound", "Repository not found")
		return false
	}
	if s.opts.Token != "" && r.Header.Get("Authorization") != "Bearer "+s.opts.Token {
		hubError(w, http.StatusUnauthorized, "GatedRepo", "Access to model "+s.opts.Repo+" is restricted.")
		return false
	}
	rev := r.PathValue("rev")
	if rev != s.opts.Commit && !slices.Contains(s.opts.Branches, rev) {
		hubError(w, http.StatusNotFound, "RevisionNotFound", "Invalid rev id: "+rev)
		return false
	}
	return true
}

func hubError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("X-Error-Code", code)
	w.Header().Set("X-Error-Message", msg)
	http.Error(w, msg, status)
}

type sibling struct {
	RFilename string   `json:"rfilename"`
	Size      *int     `json:"size,omitempty"`
	BlobID    string   `json:"blobId,omitempty"`
	LFS       *lfsInfo `json:"lfs,omitempty"`
}

type lfsInfo struct {
	SHA256      string `json:"sha256"`
	Size        int    `json:"size"`
	PointerSize int    `json:"pointerSize"`
}

func (s *Server) serveInfo(w http.ResponseWriter, r *http.Request) {
	s.record(r)
	if s.takeFailure(s.opts.Repo) {
		http.Error(w, "try again", http.StatusServiceUnavailable)
		return
	}
	if !s.check(w, r) {
		return
	}
	blobs := r.URL.Query().Get("blobs") == "true"
	sibs := make([]sibling, 0, len(s.opts.Files))
	for _, f := range s.opts.Files {
		sib := sibling{RFilename: f.Path}
		if blobs {
			size := len(f.Data)
			sib.Size = &size
			sib.BlobID = s.blobIDs[f.Path]
			if f.LFS {
				sib.LFS = &lfsInfo{SHA256: s.sha256s[f.Path], Size: len(f.Data), PointerSize: 134}
			}
		}
		sibs = append(sibs, sib)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"id": s.opts.Repo, "modelId": s.opts.Repo, "sha": s.opts.Commit, "private": false, "siblings": sibs,
	})
}

func (s *Server) serveResolve(w http.ResponseWriter, r *http.Request) {
	i := s.record(r)
	path := r.PathValue("path")
	if s.takeFailure(path) {
		http.Error(w, "try again", http.StatusServiceUnavailable)
		return
	}
	if !s.check(w, r) {
		return
	}
	f, ok := s.files[path]
	if !ok {
		hubError(w, http.StatusNotFound, "EntryNotFound", path+" does not exist")
		return
	}
	w.Header().Set("X-Repo-Commit", s.opts.Commit)
	if f.LFS {
		sha := s.sha256s[path]
		w.Header().Set("X-Linked-Etag", `"`+sha+`"`)
		w.Header().Set("X-Linked-Size", strconv.Itoa(len(f.Data)))
		w.Header().Set("ETag", `"`+s.blobIDs[path]+`"`)
		location := "/cdn/" + sha
		if s.opts.CrossHostCDN {
			location = "http://localhost:" + strconv.Itoa(s.srv.Listener.Addr().(*net.TCPAddr).Port) + location
		}
		http.Redirect(w, r, location, http.StatusFound)
		return
	}
	w.Header().Set("ETag", `"`+s.blobIDs[path]+`"`)
	s.serveBytes(w, r, i, f)
}

func (s *Server) serveCDN(w http.ResponseWriter, r *http.Request) {
	i := s.record(r)
	for p, f := range s.files {
		if f.LFS && s.sha256s[p] == r.PathValue("sha") {
			w.Header().Set("ETag", `"`+s.sha256s[p]+`"`)
			s.serveBytes(w, r, i, f)
			return
		}
	}
	http.NotFound(w, r)
}

// serveBytes serves f's contents from the Range start, applying the faults
// set for f.
func (s *Server) serveBytes(w http.ResponseWriter, r *http.Request, i int, f File) {
	data := f.Data
	s.mu.Lock()
	if s.corrupt[f.Path] && len(data) > 0 {
		data = slices.Clone(data)
		data[len(data)/2] ^= 0xff
	}
	cut, hasCut := s.cutAfter[f.Path]
	delete(s.cutAfter, f.Path)
	stall, hasStall := s.stallAfter[f.Path]
	stalled := s.stalled[f.Path]
	delete(s.stallAfter, f.Path)
	delete(s.stalled, f.Path)
	s.mu.Unlock()

	start := int64(0)
	if rng := r.Header.Get("Range"); rng != "" {
		v, ok := strings.CutPrefix(rng, "bytes=")
		v, ok2 := strings.CutSuffix(v, "-")
		n, err := strconv.ParseInt(v, 10, 64)
		if !ok || !ok2 || err != nil || n < 0 || n >= int64(len(data)) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", len(data)))
			http.Error(w, "bad range", http.StatusRequestedRangeNotSatisfiable)
			return
		}
		start = n
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", n, len(data)-1, len(data)))
	}
	body := data[start:]
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Accept-Ranges", "bytes")
	if start > 0 {
		w.WriteHeader(http.StatusPartialContent)
	}
	if hasCut && cut < int64(len(body)) {
		n, _ := w.Write(body[:cut])
		s.addBytes(i, int64(n))
		w.(http.Flusher).Flush()
		// Aborting the handler closes the connection short of the
		// announced length: the client sees an unexpected EOF.
		panic(http.ErrAbortHandler)
	}
	if hasStall && stall < int64(len(body)) {
		n, _ := w.Write(body[:stall])
		s.addBytes(i, int64(n))
		w.(http.Flusher).Flush()
		close(stalled)
		<-r.Context().Done()
		return
	}
	n, _ := w.Write(body)
	s.addBytes(i, int64(n))
}

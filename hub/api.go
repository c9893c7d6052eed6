package hub

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"
)

// maxListingBytes bounds the repository listing; the largest model repos
// list a few thousand files in well under a MiB.
const maxListingBytes = 32 << 20

// repoInfo is the part of GET /api/models/{repo}/revision/{rev}?blobs=true
// that a download needs.
type repoInfo struct {
	Commit string
	Files  []repoFile
}

// repoFile is one sibling of a listing.
type repoFile struct {
	Path string
	Size int64
	// BlobID is the git blob id (sha1): the etag of a non-LFS file.
	BlobID string
	// SHA256 is set for LFS files: their etag and content hash.
	SHA256 string
}

// etag is the blob's name in the cache, as huggingface_hub names it.
func (f repoFile) etag() string {
	if f.SHA256 != "" {
		return f.SHA256
	}
	return f.BlobID
}

// selected returns the files include accepts, largest first, so that an
// interrupted download leaves the big weights rather than the small
// configuration files behind: a snapshot holding its configuration is then
// a complete one.
func (info *repoInfo) selected(include func(string) bool) []repoFile {
	var out []repoFile
	for _, f := range info.Files {
		if include == nil || include(f.Path) {
			out = append(out, f)
		}
	}
	slices.SortStableFunc(out, func(a, b repoFile) int { return cmp.Compare(b.Size, a.Size) })
	return out
}

// parseRepoInfo decodes and validates a listing. Every file must carry a
// size and an etag (blobId or lfs.sha256), and a path that stays inside
// the snapshot directory.
func parseRepoInfo(data []byte) (*repoInfo, error) {
	var raw struct {
		SHA      string `json:"sha"`
		Siblings []struct {
			RFilename string `json:"rfilename"`
			Size      *int64 `json:"size"`
			BlobID    string `json:"blobId"`
			LFS       *struct {
				SHA256 string `json:"sha256"`
				Size   int64  `json:"size"`
			} `json:"lfs"`
		} `json:"siblings"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%w: listing: %w", ErrMalformed, err)
	}
	if !isCommit(raw.SHA) {
		return nil, fmt.Errorf("%w: listing: sha %q is not a commit id", ErrMalformed, raw.SHA)
	}
	info := &repoInfo{Commit: raw.SHA, Files: make([]repoFile, 0, len(raw.Siblings))}
	for _, s := range raw.Siblings {
		if err := validateFilePath(s.RFilename); err != nil {
			return nil, err
		}
		f := repoFile{Path: s.RFilename, BlobID: strings.ToLower(s.BlobID)}
		switch {
		case s.LFS != nil:
			f.Size = s.LFS.Size
			f.SHA256 = strings.ToLower(s.LFS.SHA256)
			if !isHex(f.SHA256, 64) {
				return nil, fmt.Errorf("%w: listing: %s: lfs.sha256 %q is not a sha256", ErrMalformed, s.RFilename, s.LFS.SHA256)
			}
		case s.Size != nil:
			f.Size = *s.Size
			if !isHex(f.BlobID, 40) {
				return nil, fmt.Errorf("%w: listing: %s: blobId %q is not a git object id", ErrMalformed, s.RFilename, s.BlobID)
			}
		default:
			return nil, fmt.Errorf("%w: listing: %s has no size (was blobs=true ignored?)", ErrMalformed, s.RFilename)
		}
		if f.Size < 0 {
			return nil, fmt.Errorf("%w: listing: %s has size %d", ErrMalformed, s.RFilename, f.Size)
		}
		info.Files = append(info.Files, f)
	}
	return info, nil
}

// repoInfo fetches and parses the listing of repo at revision, retrying
// transient failures.
func (c *Client) repoInfo(ctx context.Context, repo, revision string) (*repoInfo, error) {
	u := c.endpoint.JoinPath("api", "models", repo, "revision")
	u.RawPath = u.EscapedPath() + "/" + url.PathEscape(revision)
	u.Path = u.Path + "/" + revision
	u.RawQuery = "blobs=true"
	var info *repoInfo
	err := c.retry(ctx, "listing "+repo, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return err
		}
		c.authorize(req)
		resp, err := c.http.Do(req)
		if err != nil {
			return requestError(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return statusError(resp, repo+"@"+revision)
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxListingBytes+1))
		if err != nil {
			return transient(err)
		}
		if len(data) > maxListingBytes {
			return fmt.Errorf("%w: listing of %s is over %d bytes", ErrMalformed, repo, maxListingBytes)
		}
		info, err = parseRepoInfo(data)
		return err
	})
	return info, err
}

// resolveURL is GET {endpoint}/{repo}/resolve/{commit}/{path}.
func (c *Client) resolveURL(repo, commit, file string) string {
	return c.endpoint.JoinPath(repo, "resolve", commit, file).String()
}

// authorize adds the token to requests for the endpoint's own host. Go's
// client drops the header when a redirect leaves that host.
func (c *Client) authorize(req *http.Request) {
	req.Header.Set("User-Agent", "modelserver-hub/1")
	if c.token != "" && req.URL.Host == c.endpoint.Host {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
}

// statusError maps a non-success response to the package's errors, using
// the Hub's X-Error-Code header where present.
func statusError(resp *http.Response, what string) error {
	code := resp.Header.Get("X-Error-Code")
	msg := resp.Header.Get("X-Error-Message")
	detail := fmt.Sprintf("%s: HTTP %d", what, resp.StatusCode)
	if code != "" {
		detail += " " + code
	}
	if msg != "" {
		detail += ": " + msg
	}
	switch {
	case code == "GatedRepo":
		return fmt.Errorf("%w (%s)", ErrUnauthorized, detail)
	case code == "RepoNotFound":
		// The Hub answers 401 RepoNotFound for private repos too.
		return fmt.Errorf("%w: %s (if the repository is private or gated, set HF_TOKEN)", ErrNotFound, detail)
	case code == "RevisionNotFound", code == "EntryNotFound", resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %s", ErrNotFound, detail)
	case resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%w (%s)", ErrUnauthorized, detail)
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
		return transient(errors.New(detail))
	default:
		return errors.New("hub: " + detail)
	}
}

// retryableError marks a failure worth another attempt: a network error, a
// cut connection, a stall, 5xx or 429.
type retryableError struct{ err error }

func (e *retryableError) Error() string { return e.err.Error() }
func (e *retryableError) Unwrap() error { return e.err }

func transient(err error) error { return &retryableError{err: err} }

// requestError classifies a failed round trip: an unknown host will stay
// unknown, anything else (refused, reset, timed out) may pass.
func requestError(err error) error {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return fmt.Errorf("hub: %w", err)
	}
	return transient(err)
}

// retry runs attempt until it succeeds, fails for good, the attempts are
// spent or ctx ends, waiting a doubling backoff between attempts.
func (c *Client) retry(ctx context.Context, what string, attempt func(context.Context) error) error {
	wait := c.backoff
	for n := 1; ; n++ {
		err := attempt(ctx)
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("hub: %s: %w", what, ctxErr)
		}
		var re *retryableError
		if err == nil || !errors.As(err, &re) {
			return err
		}
		if n >= c.maxAttempts {
			return fmt.Errorf("hub: %s: giving up after %d attempts: %w", what, n, re.err)
		}
		c.log.Warn("hub request failed, retrying", "what", what, "attempt", n, "wait", wait, "err", re.err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("hub: %s: %w", what, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, maxRetryBackoff)
	}
}

// validateRepo accepts "org/name" with the characters the Hub allows.
func validateRepo(repo string) error {
	org, name, ok := strings.Cut(repo, "/")
	if !ok || !validRepoPart(org) || !validRepoPart(name) {
		return fmt.Errorf("hub: %q is not a repository id of the form org/name", repo)
	}
	return nil
}

func validRepoPart(s string) bool {
	if s == "" || len(s) > 96 || s == "." || s == ".." || strings.HasPrefix(s, "--") || strings.Contains(s, "--") {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// validateRevision accepts branch, tag and commit names that are safe as a
// path below refs/.
func validateRevision(rev string) error {
	if rev == "" || strings.ContainsAny(rev, "\\\x00") || !cleanRelative(rev) {
		return fmt.Errorf("hub: %q is not a usable revision name", rev)
	}
	return nil
}

// validateFilePath accepts repository paths that stay inside a snapshot.
func validateFilePath(p string) error {
	if p == "" || strings.ContainsAny(p, "\\\x00") || !cleanRelative(p) {
		return fmt.Errorf("%w: listing: file path %q would leave the snapshot directory", ErrMalformed, p)
	}
	return nil
}

// cleanRelative reports whether p is a relative slash path without empty,
// "." or ".." elements.
func cleanRelative(p string) bool {
	return !path.IsAbs(p) && path.Clean(p) == p && p != "." && p != ".." && !strings.HasPrefix(p, "../")
}

func isCommit(s string) bool { return isHex(s, 40) }

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

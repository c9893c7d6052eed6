package hub

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// copyBufferSize is the read size of a download; large enough that the
// per-read bookkeeping (hash, progress, stall timer) costs nothing.
const copyBufferSize = 256 << 10

// ensureFile makes snapshots/<commit>/<f.Path> point at a verified blob,
// downloading the blob when the cache lacks it.
func (c *Client) ensureFile(ctx context.Context, repo, commit, storage string, f repoFile) error {
	pointer := filepath.Join(storage, "snapshots", commit, filepath.FromSlash(f.Path))
	blob := filepath.Join(storage, "blobs", f.etag())
	if st, err := os.Stat(pointer); err == nil && st.Mode().IsRegular() && st.Size() == f.Size {
		return nil
	}
	if st, err := os.Stat(blob); err != nil || !st.Mode().IsRegular() || st.Size() != f.Size {
		if err := c.downloadBlob(ctx, repo, commit, blob, f); err != nil {
			return err
		}
	}
	return linkPointer(blob, pointer)
}

// download is the state of one blob's transfer across attempts.
type download struct {
	file *os.File
	// done is the number of bytes in file; all of them have gone through
	// sum.
	done int64
	sum  hash.Hash
	f    repoFile
}

// downloadBlob fetches f into blob through blob+".incomplete", resuming
// what an earlier run left there, and renames it into place once its size
// and hash are right.
func (c *Client) downloadBlob(ctx context.Context, repo, commit, blob string, f repoFile) error {
	if err := os.MkdirAll(filepath.Dir(blob), 0o755); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	part := blob + ".incomplete"
	file, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	defer file.Close()
	d := &download{file: file, f: f, sum: newContentHash(f)}
	if err := d.resumeFromDisk(); err != nil {
		return err
	}
	resumed := d.done
	c.log.Info("downloading", "repo", repo, "file", f.Path, "bytes", f.Size, "resume_from", resumed)
	p := c.newProgress(f.Path, f.Size, d.done)
	u := c.resolveURL(repo, commit, f.Path)
	transfer := func() error {
		return c.retry(ctx, "downloading "+f.Path, func(ctx context.Context) error {
			return c.fetchRest(ctx, u, d, p)
		})
	}
	err = transfer()
	if err == nil && resumed > 0 && d.hashHex() != f.etag() {
		// The bytes an earlier run left may be what is wrong (a crash
		// can leave garbage at a file's end): one fresh download decides.
		c.log.Warn("resumed download failed verification; downloading the whole file again", "file", f.Path)
		if err = d.restart(); err == nil {
			p.restart()
			err = transfer()
		}
	}
	p.finish(d.done)
	if err == nil && d.hashHex() != f.etag() {
		err = fmt.Errorf("%w: %s: hash %s, listed %s", ErrCorrupt, f.Path, d.hashHex(), f.etag())
	}
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			file.Close()
			os.Remove(part)
		}
		return err
	}
	// Synced before the rename, so a crash cannot leave a named blob with
	// contents that never reached the disk.
	if err := errors.Join(file.Sync(), file.Close()); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if err := os.Rename(part, blob); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	c.log.Info("downloaded", "repo", repo, "file", f.Path, "bytes", f.Size, "resumed_bytes", resumed)
	return nil
}

// newContentHash returns the hash a blob's etag is made of: sha256 for LFS
// files, the git blob id (sha1 over "blob <size>\x00" and the contents)
// otherwise.
func newContentHash(f repoFile) hash.Hash {
	if f.SHA256 != "" {
		return sha256.New()
	}
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", f.Size)
	return h
}

// hashHex is the hex digest of the bytes so far.
func (d *download) hashHex() string { return hex.EncodeToString(d.sum.Sum(nil)) }

// resumeFromDisk hashes what an earlier run left in the .incomplete file,
// or empties it when it is longer than the file can be.
func (d *download) resumeFromDisk() error {
	st, err := d.file.Stat()
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if st.Size() > d.f.Size {
		return d.restart()
	}
	if _, err := io.Copy(d.sum, io.NewSectionReader(d.file, 0, st.Size())); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	d.done = st.Size()
	if _, err := d.file.Seek(d.done, io.SeekStart); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	return nil
}

// restart empties the file when the server will not continue where it left
// off.
func (d *download) restart() error {
	if err := d.file.Truncate(0); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if _, err := d.file.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	d.sum = newContentHash(d.f)
	d.done = 0
	return nil
}

// fetchRest is one attempt: it asks for the bytes after d.done and appends
// them. Errors worth another attempt are marked transient; the next one
// resumes from whatever this one wrote.
func (c *Client) fetchRest(ctx context.Context, u string, d *download, p *progress) error {
	if d.done == d.f.Size {
		return nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	errStalled := fmt.Errorf("no data for %v", c.stallTimeout)
	stall := time.AfterFunc(c.stallTimeout, func() { cancel(errStalled) })
	defer stall.Stop()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	c.authorize(req)
	// Content hashes are over the stored bytes, so no transparent gzip.
	req.Header.Set("Accept-Encoding", "identity")
	if d.done > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(d.done, 10)+"-")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return requestError(stallCause(ctx, err))
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		if d.done > 0 {
			c.log.Info("server ignored the range request; starting over", "file", d.f.Path)
			if err := d.restart(); err != nil {
				return err
			}
		}
	case http.StatusPartialContent:
		start, err := contentRangeStart(resp.Header.Get("Content-Range"))
		if err != nil || start != d.done {
			if err := d.restart(); err != nil {
				return err
			}
			return transient(fmt.Errorf("server sent range %q for a request from byte %d", resp.Header.Get("Content-Range"), d.done))
		}
	case http.StatusRequestedRangeNotSatisfiable:
		if err := d.restart(); err != nil {
			return err
		}
		return transient(fmt.Errorf("server refused range from byte %d", d.done))
	default:
		return statusError(resp, d.f.Path)
	}

	buf := make([]byte, copyBufferSize)
	for {
		n, readErr := resp.Body.Read(buf)
		if n > 0 {
			stall.Reset(c.stallTimeout)
			if d.done+int64(n) > d.f.Size {
				return fmt.Errorf("%w: %s: server sent more than the listed %d bytes", ErrCorrupt, d.f.Path, d.f.Size)
			}
			if _, err := d.file.Write(buf[:n]); err != nil {
				return fmt.Errorf("hub: %w", err)
			}
			d.sum.Write(buf[:n])
			d.done += int64(n)
			p.update(d.done)
		}
		switch {
		case readErr == io.EOF && d.done == d.f.Size:
			return nil
		case readErr == io.EOF:
			return transient(fmt.Errorf("connection ended at byte %d of %d", d.done, d.f.Size))
		case readErr != nil:
			return transient(stallCause(ctx, readErr))
		}
	}
}

// stallCause names the stall timer as the reason when it cut the request.
func stallCause(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) && !errors.Is(cause, context.DeadlineExceeded) {
		return cause
	}
	return err
}

// contentRangeStart parses the first byte of "bytes <start>-<end>/<total>".
func contentRangeStart(v string) (int64, error) {
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, fmt.Errorf("content-range %q", v)
	}
	start, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, fmt.Errorf("content-range %q", v)
	}
	return strconv.ParseInt(start, 10, 64)
}

// linkPointer makes pointer a relative symlink to blob, as huggingface_hub
// does, so the cache survives being moved.
func linkPointer(blob, pointer string) error {
	if err := os.MkdirAll(filepath.Dir(pointer), 0o755); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	rel, err := filepath.Rel(filepath.Dir(pointer), blob)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if err := os.Remove(pointer); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("hub: %w", err)
	}
	if err := os.Symlink(rel, pointer); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	return nil
}

// writeRef records that revision resolved to commit, replacing the file
// atomically so readers never see it half written.
func writeRef(storage, revision, commit string) error {
	ref := filepath.Join(storage, "refs", filepath.FromSlash(revision))
	if b, err := os.ReadFile(ref); err == nil && string(b) == commit {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(ref), 0o755); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(ref), ".ref-*")
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	_, werr := tmp.WriteString(commit)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("hub: %w", err)
	}
	if err := os.Rename(tmp.Name(), ref); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("hub: %w", err)
	}
	return nil
}

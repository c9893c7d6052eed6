package hub_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/modelserver/modelserver/hub"
	"github.com/modelserver/modelserver/hub/hubtest"
)

// Snapshot fetches one folder of a repository into the cache and returns
// the snapshot directory; a second call finds it there.
func ExampleClient_Snapshot() {
	fake := hubtest.NewServer(hubtest.Options{
		Repo:   "acme/tiny",
		Commit: "0123456789abcdef0123456789abcdef01234567",
		Files: []hubtest.File{
			{Path: "cpu/genai_config.json", Data: []byte("{}")},
			{Path: "cpu/model.onnx", Data: []byte("weights"), LFS: true},
			{Path: "cuda/model.onnx", Data: []byte("other weights"), LFS: true},
		},
	})
	defer fake.Close()
	cache, err := os.MkdirTemp("", "hub-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(cache)

	// cmd builds the client from flags and hub.DefaultCacheDir(os.Getenv).
	c, err := hub.New(hub.Options{Endpoint: fake.URL(), CacheDir: cache, HTTPClient: fake.Client()})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir, err := c.Snapshot(ctx, "acme/tiny", "main", func(p string) bool {
		return strings.HasPrefix(p, "cpu/")
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	rel, _ := filepath.Rel(cache, dir)
	fmt.Println(rel)
	data, _ := os.ReadFile(filepath.Join(dir, "cpu", "model.onnx"))
	fmt.Println(string(data))
	// Output:
	// models--acme--tiny/snapshots/0123456789abcdef0123456789abcdef01234567
	// weights
}

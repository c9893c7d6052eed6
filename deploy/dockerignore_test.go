package deploy

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// dockerignore is the repository's .dockerignore as Docker reads it.
func dockerignore(t *testing.T) *patternmatcher.PatternMatcher {
	t.Helper()
	f, err := os.Open("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	return pm
}

// TestDockerignore: local installs and build products stay out of the build
// context (they are large, and would change what COPY . . hashes), what the
// images build from stays in.
func TestDockerignore(t *testing.T) {
	pm := dockerignore(t)
	tests := []struct {
		path     string
		excluded bool
	}{
		{"node_modules/x/index.js", true},
		{"cmd/modelserver/testdata/node/node_modules/@grpc/grpc-js/package.json", true},
		{"bin/gpu-verify/gpu-verify.sh", true},
		{".git/HEAD", true},
		{"modelserver", true},
		{"chains.test", true},
		{"cmd/modelserver/modelserver.test", true},
		{"engine/cpu.prof", true},
		{"go.mod", false},
		{"go.sum", false},
		{"cmd/modelserver/main.go", false},
		{"cmd/modelserver/testdata/node/package.json", false},
		{"cuda/kernels/kernels.cu", false},
		{ortScript, false},
		{"scripts/check-cuda-build.sh", false},
	}
	for _, tt := range tests {
		excluded, err := pm.MatchesOrParentMatches(tt.path)
		if err != nil {
			t.Fatalf("%s: %v", tt.path, err)
		}
		if excluded != tt.excluded {
			t.Errorf(".dockerignore excludes %s: %v, want %v", tt.path, excluded, tt.excluded)
		}
	}
}

// TestDockerignoreKeepsSources: every Go file and embedded asset of the
// checkout reaches the build context, so `go build` in the build stage sees
// the tree `go test` does.
func TestDockerignoreKeepsSources(t *testing.T) {
	pm := dockerignore(t)
	err := filepath.WalkDir("..", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel("..", p)
		if err != nil {
			return err
		}
		// Local installs and build outputs (bin/ may hold copies of sources).
		if e.IsDir() && (e.Name() == ".git" || e.Name() == "node_modules" || rel == "bin") {
			return filepath.SkipDir
		}
		switch filepath.Ext(rel) {
		case ".go", ".mod", ".sum", ".cu", ".ptx", ".proto":
		default:
			return nil
		}
		if excluded, err := pm.MatchesOrParentMatches(filepath.ToSlash(rel)); err != nil || excluded {
			t.Errorf(".dockerignore excludes %s (%v)", rel, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

package cuda

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestOnlyTaggedBuildsImportCu guards the rule that keeps CPU-only binaries
// alive: gorgonia.org/cu exits the process in its init without a driver, so
// no package may import it without the cuda build tag.
func TestOnlyTaggedBuildsImportCu(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	deps := func(tags string) []string {
		out, err := exec.Command(goTool, "list", "-deps", "-tags="+tags, "github.com/modelserver/modelserver/...").Output()
		if err != nil {
			t.Fatalf("go list -deps -tags=%q: %v", tags, err)
		}
		return strings.Fields(string(out))
	}
	if untagged := deps(""); slices.Contains(untagged, "gorgonia.org/cu") {
		t.Error("a package imports gorgonia.org/cu without the cuda build tag; CPU-only binaries would exit in its init")
	}
	if tagged := deps("cuda"); !slices.Contains(tagged, "gorgonia.org/cu") {
		t.Error("with the cuda tag nothing imports gorgonia.org/cu; this test no longer checks anything")
	}
}

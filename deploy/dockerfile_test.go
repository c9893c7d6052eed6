package deploy

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// dockerfile is a Dockerfile parsed by BuildKit's frontend, with the
// global ARG defaults to expand FROM lines.
type dockerfile struct {
	stages   []instructions.Stage
	args     map[string]string
	warnings []string
}

func parseDockerfile(src []byte) (*dockerfile, error) {
	res, err := parser.Parse(bytes.NewReader(src))
	if err != nil {
		return nil, err
	}
	d := &dockerfile{args: map[string]string{}}
	for _, w := range res.Warnings {
		d.warnings = append(d.warnings, w.Short)
	}
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, loc []parser.Range) {
		d.warnings = append(d.warnings, fmt.Sprintf("%s (line %d): %s", rule, loc[0].Start.Line, msg))
	}})
	stages, meta, err := instructions.Parse(res.AST, lint)
	if err != nil {
		return nil, err
	}
	d.stages = stages
	for _, a := range meta {
		for _, kv := range a.Args {
			if kv.Value != nil {
				d.args[kv.Key] = *kv.Value
			} else {
				d.args[kv.Key] = ""
			}
		}
	}
	return d, nil
}

// problems collects what a check finds wrong.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// expand substitutes global ARG defaults the way BuildKit does in FROM.
func (d *dockerfile) expand(p *problems, word string) string {
	lex := shell.NewLex('\\')
	res, err := lex.ProcessWordWithMatches(word, shell.EnvsFromSlice(d.env()))
	if err != nil {
		p.add("expanding %q: %v", word, err)
		return word
	}
	if len(res.Unmatched) > 0 {
		p.add("%q uses build args without a default: %v", word, res.Unmatched)
	}
	return res.Result
}

func (d *dockerfile) env() []string {
	var env []string
	for k, v := range d.args {
		env = append(env, k+"="+v)
	}
	return env
}

// stage returns the named stage, or an empty one and a problem.
func (d *dockerfile) stage(p *problems, name string) instructions.Stage {
	for _, s := range d.stages {
		if s.Name == name {
			return s
		}
	}
	p.add("no stage %q", name)
	return instructions.Stage{Name: name}
}

func commands[T instructions.Command](s instructions.Stage) []T {
	var out []T
	for _, c := range s.Commands {
		if v, ok := c.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func runLines(s instructions.Stage) []string {
	var out []string
	for _, r := range commands[*instructions.RunCommand](s) {
		out = append(out, strings.Join(r.CmdLine, " "))
	}
	return out
}

// repo holds the repository files the checks compare a Dockerfile with.
type repo struct {
	goMod     []byte // go.mod
	ortScript []byte // scripts/install-onnxruntime.sh
}

// check is one invariant of a Dockerfile; it adds what it finds wrong to p.
type check struct {
	name  string
	check func(d *dockerfile, r repo, p *problems)
}

// mutation is a mistake the checks must catch: old replaced with new once.
type mutation struct{ name, old, new string }

// images are the Dockerfiles at the repository root, with their invariants
// and the broken variants that must fail them.
var images = []struct {
	path      string
	checks    []check
	mutations []mutation
}{
	{"../Dockerfile.cuda", cudaChecks, cudaMutations},
	{"../Dockerfile", cpuChecks, cpuMutations},
}

var cudaChecks = []check{
	{"stages", checkStages},
	{"build stage", checkBuildStage},
	{"onnxruntime", checkONNXRuntime},
	{"runtime stage", checkRuntimeStage},
}

var cudaMutations = []mutation{
	{"shell-form entrypoint", `ENTRYPOINT ["/usr/local/bin/modelserver", "--model", "/app", "--host", "0.0.0.0", "--port", "8080"]`, `ENTRYPOINT /usr/local/bin/modelserver --model /app`},
	{"another model dir", `"--model", "/app"`, `"--model", "/models"`},
	{"root user", "USER 10001:10001", "USER root"},
	{"RUN as the user", "USER 10001:10001\n", "USER 10001:10001\nRUN true\n"},
	{"no sha check", `echo "${ORT_SHA256}  /tmp/ort.tgz" | sha256sum --check --strict; \`, `true; \`},
	{"empty sha accepted", `test -n "${ORT_SHA256}" || { echo "ORT_SHA256 is required" >&2; exit 1; }; \`, `true; \`},
	{"short sha", "ARG ORT_SHA256=c5f8", "ARG ORT_SHA256=5f8"},
	{"ORT 1.23", "ARG ORT_VERSION=1.24.4", "ARG ORT_VERSION=1.23.2"},
	{"devel runtime", "-cudnn-runtime-ubuntu", "-cudnn-devel-ubuntu"},
	{"no cudnn", "-cudnn-runtime-ubuntu", "-runtime-ubuntu"},
	{"CUDA 13 runtime", "ARG CUDA_VERSION=12.8.1", "ARG CUDA_VERSION=13.0.1"},
	{"old Go", "ARG GO_VERSION=1.26.8", "ARG GO_VERSION=1.22.0"},
	{"hard-coded base", "FROM golang:${GO_VERSION}-${DEBIAN_RELEASE} AS build", "FROM golang:1.26.8-bookworm AS build"},
	{"latest base", "FROM debian:${DEBIAN_RELEASE}-slim AS onnxruntime", "FROM debian:latest AS onnxruntime"},
	{"other port", "EXPOSE 8080", "EXPOSE 9090"},
	{"untagged build", "go build -tags cuda", "go build"},
	{"no PTX check", "RUN scripts/check-cuda-build.sh --check-ptx\n", ""},
	{"no CUDA toolchain", "nvidia-cuda-dev nvidia-cuda-toolkit", "build-essential"},
	{"shell health check", `CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/v1/models/model"]`, `CMD curl -fsS http://127.0.0.1:8080/v1/models/model`},
	{"liveness instead of readiness", `"http://127.0.0.1:8080/v1/models/model"`, `"http://127.0.0.1:8080/"`},
	{"no health start period", "--start-period=300s ", ""},
	{"source in the image", "COPY --from=model / /app/", "COPY . /app/"},
	{"wrong library path", "ENV ONNXRUNTIME_LIB=/opt/onnxruntime/lib/libonnxruntime.so", "ENV ONNXRUNTIME_LIB=/usr/lib/libonnxruntime.so"},
	{"no workdir", "WORKDIR /app\n", ""},
	{"shell-form CMD", `CMD ["--device", "auto"]`, `CMD echo auto`},
}

func load(t *testing.T, path string) (*dockerfile, []byte, repo) {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r repo
	if r.goMod, err = os.ReadFile("../go.mod"); err != nil {
		t.Fatal(err)
	}
	if r.ortScript, err = os.ReadFile("../" + ortScript); err != nil {
		t.Fatal(err)
	}
	d, err := parseDockerfile(src)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return d, src, r
}

func TestDockerfile(t *testing.T) {
	for _, img := range images {
		t.Run(strings.TrimPrefix(img.path, "../"), func(t *testing.T) {
			d, _, r := load(t, img.path)
			for _, w := range d.warnings {
				t.Errorf("%s: %s", img.path, w)
			}
			for _, c := range img.checks {
				var p problems
				c.check(d, r, &p)
				for _, msg := range p {
					t.Errorf("%s: %s: %s", img.path, c.name, msg)
				}
			}
		})
	}
}

// TestDockerfileChecksCatchMistakes feeds the checks broken variants of each
// file, so each is known to fail when it should.
func TestDockerfileChecksCatchMistakes(t *testing.T) {
	for _, img := range images {
		t.Run(strings.TrimPrefix(img.path, "../"), func(t *testing.T) {
			_, src, r := load(t, img.path)
			for _, m := range img.mutations {
				if !bytes.Contains(src, []byte(m.old)) {
					t.Fatalf("%s: %q is not in %s; update the mutation", m.name, m.old, img.path)
				}
				d, err := parseDockerfile(bytes.Replace(src, []byte(m.old), []byte(m.new), 1))
				if err != nil {
					t.Errorf("%s: the parser refuses the variant (%v); make the mutation one it accepts", m.name, err)
					continue
				}
				p := problems(d.warnings)
				for _, c := range img.checks {
					c.check(d, r, &p)
				}
				if len(p) == 0 {
					t.Errorf("%s: the checks pass a Dockerfile with this mistake", m.name)
				}
			}
		})
	}
}

func checkStages(d *dockerfile, _ repo, p *problems) {
	if len(d.stages) < 3 {
		p.add("%d stages; want a multi-stage build (build, runtime and more)", len(d.stages))
	}
	// Base image versions are build arguments with defaults, never latest.
	for _, s := range d.stages {
		if s.BaseName == "scratch" {
			continue
		}
		if !strings.Contains(s.BaseName, "${") {
			p.add("stage %q: base image %q is not set through a build argument", s.Name, s.BaseName)
		}
		img := d.expand(p, s.BaseName)
		if _, tag, ok := strings.Cut(img, ":"); !ok || tag == "latest" || tag == "" {
			p.add("stage %q: base image %q has no pinned tag", s.Name, img)
		}
	}
}

// checkBuildStage: Go plus the CUDA headers and nvcc, building modelserver
// with the cuda tag, for at least the Go that go.mod asks for.
func checkBuildStage(d *dockerfile, r repo, p *problems) {
	runs := checkGoBuild(d, r, p, `go build .*-tags cuda .*-o (\S+) \./cmd/modelserver`)
	for _, want := range []string{"nvidia-cuda-dev", "nvidia-cuda-toolkit", "contrib non-free"} {
		if !strings.Contains(runs, want) {
			p.add("build stage does not install the CUDA toolchain (%q missing)", want)
		}
	}
	if !strings.Contains(runs, "scripts/check-cuda-build.sh --check-ptx") {
		p.add("the build stage does not check that the embedded PTX matches its source")
	}
}

// checkGoBuild checks what every build stage shares: a Go image at least as
// new as go.mod's go directive, cgo (onnxruntime_go opens the library
// through it), and a go build matching goBuild whose output, its first
// submatch, the runtime stage copies. It returns the stage's RUN lines.
func checkGoBuild(d *dockerfile, r repo, p *problems, goBuild string) string {
	build := d.stage(p, "build")
	if img := d.expand(p, build.BaseName); !strings.HasPrefix(img, "golang:") {
		p.add("build stage base %q is not a Go image", img)
	}
	runs := strings.Join(runLines(build), "\n")
	if !strings.Contains(runs, "CGO_ENABLED=1") {
		p.add("onnxruntime_go needs cgo; set CGO_ENABLED=1 explicitly")
	}
	out := regexp.MustCompile(goBuild).FindStringSubmatch(runs)
	if out == nil {
		p.add("no go build matching %s in:\n%s", goBuild, runs)
	} else if !copiesFrom(d.stage(p, "runtime"), "build", out[1]) {
		p.add("the runtime stage does not COPY --from=build %s", out[1])
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+(?:\.\d+)?)$`).FindSubmatch(r.goMod)
	if m == nil {
		p.add("go.mod has no go directive")
	} else if v := d.args["GO_VERSION"]; compareVersions(v, string(m[1])) < 0 {
		p.add("GO_VERSION %s is older than go.mod's go %s", v, m[1])
	}
	return runs
}

func copiesFrom(s instructions.Stage, from, src string) bool {
	for _, c := range commands[*instructions.CopyCommand](s) {
		if c.From == from && slices.Contains(c.SourcePaths, src) {
			return true
		}
	}
	return false
}

// compareVersions compares dotted numeric versions ("1.26.8" with "1.26").
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(as), len(bs)) {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x - y
		}
	}
	return 0
}

// checkONNXRuntime: the GPU release of ONNX Runtime 1.24, pinned, checked
// against its sha256 before it is unpacked, for the CUDA major of the
// runtime image, and found by modelserver through ONNXRUNTIME_LIB.
func checkONNXRuntime(d *dockerfile, _ repo, p *problems) {
	if v := d.args["ORT_VERSION"]; !regexp.MustCompile(`^1\.24\.\d+$`).MatchString(v) {
		p.add("ORT_VERSION %q is not a 1.24.x release", v)
	}
	if sum := d.args["ORT_SHA256"]; !sha256Hex.MatchString(sum) {
		p.add("ORT_SHA256 %q is not a sha256", sum)
	}
	// ONNX Runtime 1.24's default GPU package is built for CUDA 12 and cuDNN 9.
	if v := d.args["CUDA_VERSION"]; !strings.HasPrefix(v, "12.") {
		p.add("CUDA_VERSION %q: onnxruntime-linux-x64-gpu-1.24 needs CUDA 12", v)
	}
	ort := d.stage(p, "onnxruntime")
	var fetch string
	for _, r := range runLines(ort) {
		if strings.Contains(r, "onnxruntime-linux-x64-gpu-${ORT_VERSION}.tgz") {
			fetch = r
		}
	}
	download := strings.Index(fetch, "curl ")
	check := strings.Index(fetch, `echo "${ORT_SHA256}  /tmp/ort.tgz" | sha256sum --check`)
	unpack := strings.Index(fetch, "tar -xzf /tmp/ort.tgz")
	if download < 0 || check < download || unpack < check || !strings.HasPrefix(fetch, "set -eu;") {
		p.add("onnxruntime-linux-x64-gpu-${ORT_VERSION}.tgz must be downloaded and checked against ORT_SHA256 before it is unpacked, under set -e:\n%s", fetch)
	}
	if empty := strings.Index(fetch, `test -n "${ORT_SHA256}"`); empty < 0 || empty > download {
		p.add("an empty ORT_SHA256 is not rejected before the download")
	}
	declared := map[string]bool{}
	for _, a := range commands[*instructions.ArgCommand](ort) {
		for _, kv := range a.Args {
			declared[kv.Key] = kv.Value == nil
		}
	}
	if !declared["ORT_VERSION"] || !declared["ORT_SHA256"] {
		p.add("the onnxruntime stage must declare ARG ORT_VERSION and ARG ORT_SHA256 without values (global ARGs are invisible in a stage otherwise)")
	}
	checkLibraryFound(d, p, "/out/lib/")
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// checkLibraryFound: the runtime stage copies the directory libDir of the
// onnxruntime stage and points ONNXRUNTIME_LIB at its libonnxruntime.so.
func checkLibraryFound(d *dockerfile, p *problems, libDir string) {
	runtime := d.stage(p, "runtime")
	lib := envOf(runtime)["ONNXRUNTIME_LIB"]
	var dest string
	for _, c := range commands[*instructions.CopyCommand](runtime) {
		if c.From == "onnxruntime" && slices.Contains(c.SourcePaths, libDir) {
			dest = c.DestPath
		}
	}
	if dest == "" || !strings.HasPrefix(lib, dest) || lib[len(dest):] != "libonnxruntime.so" {
		p.add("ONNXRUNTIME_LIB %q is not the libonnxruntime.so of %s copied from the onnxruntime stage (to %q)", lib, libDir, dest)
	}
}

func envOf(s instructions.Stage) map[string]string {
	env := map[string]string{}
	for _, e := range commands[*instructions.EnvCommand](s) {
		for _, kv := range e.Env {
			env[kv.Key] = kv.Value
		}
	}
	return env
}

// checkRuntimeStage: the slim CUDA runtime image, a non-root user, the model
// at /app, port 8080, a readiness health check and an exec-form entrypoint
// serving /app, on the device auto picks.
func checkRuntimeStage(d *dockerfile, _ repo, p *problems) {
	last := checkImage(d, p, imageWants{ports: []string{"8080"}, cmd: []string{"--device", "auto"}})
	img := d.expand(p, last.BaseName)
	if !strings.HasPrefix(img, "nvidia/cuda:") || !strings.Contains(img, "-runtime-") || strings.Contains(img, "devel") {
		p.add("runtime base %q is not an nvidia/cuda runtime image", img)
	}
	if !strings.Contains(img, "cudnn") {
		p.add("runtime base %q lacks cuDNN, which ONNX Runtime's CUDA provider needs", img)
	}
}

// imageWants is what differs between the images' last stages.
type imageWants struct {
	ports []string // EXPOSE, in order
	cmd   []string // CMD: the default arguments after the entrypoint's
}

// checkImage checks what both images' last stages share: named runtime,
// nothing copied from the build context, the model stage at /app, a numeric
// non-root user, WORKDIR /app, a readiness health check and an exec-form
// entrypoint serving /app on 8080. It returns the stage.
func checkImage(d *dockerfile, p *problems, want imageWants) instructions.Stage {
	if len(d.stages) == 0 {
		p.add("no stages")
		return instructions.Stage{}
	}
	last := d.stages[len(d.stages)-1]
	if last.Name != "runtime" {
		p.add("the last stage (the image) is %q, want runtime", last.Name)
	}

	// Nothing from the build context reaches the image directly.
	var modelDest string
	for _, c := range commands[*instructions.CopyCommand](last) {
		switch c.From {
		case "":
			p.add("the runtime stage copies %v from the build context; copy from a stage", c.SourcePaths)
		case "model":
			modelDest = c.DestPath
		}
	}
	if modelDest != "/app/" {
		p.add("the model stage is copied to %q, want /app/", modelDest)
	}
	if model := d.stage(p, "model"); model.BaseName != "scratch" || len(model.Commands) != 0 {
		p.add("the model stage is %q with %d commands; want an empty scratch stage that --build-context model=DIR replaces", model.BaseName, len(model.Commands))
	}

	// The user the container runs as: numeric (so Kubernetes can check
	// runAsNonRoot), not root, created in the stage, set after the last RUN.
	var user string
	for _, c := range last.Commands {
		switch c := c.(type) {
		case *instructions.UserCommand:
			user = c.User
		case *instructions.RunCommand:
			if user != "" {
				p.add("RUN %v after USER runs as the unprivileged user; keep USER last", c.CmdLine)
			}
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n < 1000 {
		p.add("USER %q: want a numeric non-root uid of 1000 or more", user)
	} else if !strings.Contains(strings.Join(runLines(last), "\n"), "--uid "+uid) {
		p.add("uid %s is not created (useradd --uid %s)", uid, uid)
	}

	workdirs := commands[*instructions.WorkdirCommand](last)
	if len(workdirs) == 0 || workdirs[len(workdirs)-1].Path != "/app" {
		p.add("WORKDIR is not /app")
	}
	var ports []string
	for _, e := range commands[*instructions.ExposeCommand](last) {
		ports = append(ports, e.Ports...)
	}
	if !slices.Equal(ports, want.ports) {
		p.add("EXPOSE %v, want %v", ports, want.ports)
	}

	if hc := commands[*instructions.HealthCheckCommand](last); len(hc) != 1 {
		p.add("%d HEALTHCHECKs, want 1", len(hc))
	} else {
		h := hc[0].Health
		probe := strings.Join(h.Test, " ")
		if len(h.Test) < 2 || h.Test[0] != "CMD" || !strings.Contains(probe, "http://127.0.0.1:8080/v1/models/") || !strings.Contains(probe, "-f") {
			p.add("HEALTHCHECK %v: want exec form probing readiness (/v1/models/...) on 8080 and failing on HTTP errors", h.Test)
		}
		if h.Interval <= 0 || h.Timeout <= 0 || h.StartPeriod < time.Minute || h.Retries < 1 {
			p.add("HEALTHCHECK timing %+v: want interval, timeout, retries and a start period of a minute or more for model loading", *h)
		}
		if h.Test[0] == "CMD" && len(h.Test) > 1 && h.Test[1] == "curl" && !installs(last, "curl") {
			p.add("the health check's curl is not installed in the runtime stage")
		}
	}

	eps := commands[*instructions.EntrypointCommand](last)
	if len(eps) != 1 {
		p.add("%d ENTRYPOINTs, want 1", len(eps))
		return last
	}
	ep := eps[0]
	if ep.PrependShell {
		p.add("ENTRYPOINT %v is in shell form; want exec form so signals reach modelserver", ep.CmdLine)
	}
	if len(ep.CmdLine) == 0 || ep.CmdLine[0] != "/usr/local/bin/modelserver" || !copiesFrom(last, "build", "/out/modelserver") || !copiesTo(last, "build", "/usr/local/bin/modelserver") {
		p.add("ENTRYPOINT %v does not start the modelserver binary copied from the build stage", ep.CmdLine)
	}
	if i := slices.Index(ep.CmdLine, "--model"); i < 0 || i+1 >= len(ep.CmdLine) || ep.CmdLine[i+1] != "/app" {
		p.add("ENTRYPOINT %v does not serve --model /app", ep.CmdLine)
	}
	if i := slices.Index(ep.CmdLine, "--port"); i >= 0 && (i+1 >= len(ep.CmdLine) || ep.CmdLine[i+1] != "8080") {
		p.add("ENTRYPOINT %v listens on another port than the one exposed and probed", ep.CmdLine)
	}
	cmds := commands[*instructions.CmdCommand](last)
	if len(cmds) != 1 || cmds[0].PrependShell || !slices.Equal(cmds[0].CmdLine, want.cmd) {
		p.add("CMD should be the exec-form default arguments %v, got %d CMDs", want.cmd, len(cmds))
	}
	return last
}

func copiesTo(s instructions.Stage, from, dest string) bool {
	for _, c := range commands[*instructions.CopyCommand](s) {
		if c.From == from && c.DestPath == dest {
			return true
		}
	}
	return false
}

// installs reports whether a RUN of s installs the Debian package pkg.
func installs(s instructions.Stage, pkg string) bool {
	re := regexp.MustCompile(`apt-get install [^&|;]*\s` + regexp.QuoteMeta(pkg) + `(\s|$)`)
	return slices.ContainsFunc(runLines(s), re.MatchString)
}

// ortScript installs the ONNX Runtime CPU library the tests run with; the
// CPU image runs it too, so its pin is the only one.
const ortScript = "scripts/install-onnxruntime.sh"

var cpuChecks = []check{
	{"stages", checkStages},
	{"build stage", checkCPUBuildStage},
	{"onnxruntime", checkInstallScript},
	{"runtime stage", checkCPURuntimeStage},
}

var cpuMutations = []mutation{
	{"shell-form entrypoint", `ENTRYPOINT ["/usr/local/bin/modelserver", "--model", "/app", "--host", "0.0.0.0", "--port", "8080"]`, `ENTRYPOINT /usr/local/bin/modelserver --model /app`},
	{"another model dir", `"--model", "/app"`, `"--model", "/models"`},
	{"root user", "USER 10001:10001", "USER root"},
	{"RUN as the user", "USER 10001:10001\n", "USER 10001:10001\nRUN true\n"},
	{"old Go", "ARG GO_VERSION=1.26.8", "ARG GO_VERSION=1.22.0"},
	{"hard-coded Node", "FROM node:${NODE_VERSION}-${DEBIAN_RELEASE}-slim AS onnxruntime", "FROM node:24.12.0-bookworm-slim AS onnxruntime"},
	{"latest base", "FROM debian:${DEBIAN_RELEASE}-slim AS runtime", "FROM debian:latest AS runtime"},
	{"fat runtime base", "FROM debian:${DEBIAN_RELEASE}-slim AS runtime", "FROM golang:${GO_VERSION}-${DEBIAN_RELEASE} AS runtime"},
	{"glibc of another release", "FROM golang:${GO_VERSION}-${DEBIAN_RELEASE} AS build", "FROM golang:${GO_VERSION}-trixie AS build"},
	{"no cgo", "CGO_ENABLED=1", "CGO_ENABLED=0"},
	{"cuda tag", "go build -trimpath", "go build -tags cuda -trimpath"},
	{"no trimpath", "go build -trimpath", "go build"},
	{"binary elsewhere", "COPY --from=build /out/modelserver /usr/local/bin/modelserver", "COPY --from=build /out/modelserver /usr/bin/modelserver"},
	{"binary not copied", "COPY --from=build /out/modelserver /usr/local/bin/modelserver\n", ""},
	{"script not run", "RUN ORT_INSTALL_DIR=/out/lib /src/scripts/install-onnxruntime.sh\n", ""},
	{"ORT fetched here", "RUN ORT_INSTALL_DIR=/out/lib /src/scripts/install-onnxruntime.sh", "RUN ORT_INSTALL_DIR=/out/lib /src/scripts/install-onnxruntime.sh && npm pack onnxruntime-node@1.24.2"},
	{"re-pinned version", "ARG NODE_VERSION=", "ARG ORT_VERSION=1.24.2\nARG NODE_VERSION="},
	{"re-pinned sha", "ENV ONNXRUNTIME_LIB=", "ENV ORT_SHA256=c5f804ff5d239b436fa59e9f2fb288a39f7eb9552f6a636c8b71e792e91a8808\nENV ONNXRUNTIME_LIB="},
	{"library of another release", "/opt/onnxruntime/lib/libonnxruntime.so \\", "/opt/onnxruntime/lib/libonnxruntime.so.1.24.2 \\"},
	{"library installed elsewhere", "ORT_INSTALL_DIR=/out/lib ", "ORT_INSTALL_DIR=/out/lib64 "},
	{"library not copied", "COPY --from=onnxruntime /out/lib/ /opt/onnxruntime/lib/\n", ""},
	{"wrong library path", "ENV ONNXRUNTIME_LIB=/opt/onnxruntime/lib/libonnxruntime.so", "ENV ONNXRUNTIME_LIB=/usr/lib/libonnxruntime.so"},
	{"no CA certificates", "--no-install-recommends ca-certificates curl", "--no-install-recommends curl"},
	{"no health check curl", "ca-certificates curl libstdc++6", "ca-certificates libstdc++6"},
	{"no HF_HOME", " \\\n    HF_HOME=/cache/huggingface", ""},
	{"cache owned by root", " \\\n && chown 10001:10001 /cache/huggingface", ""},
	{"no cache volume", `VOLUME ["/cache/huggingface"]` + "\n", ""},
	{"no gRPC port", "EXPOSE 8080 8081", "EXPOSE 8080"},
	{"GPU probe", `CMD ["--device", "cpu"]`, `CMD ["--device", "auto"]`},
	{"shell health check", `CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/v1/models/model"]`, `CMD curl -fsS http://127.0.0.1:8080/v1/models/model`},
	{"source in the image", "COPY --from=model / /app/", "COPY . /app/"},
	{"no workdir", "WORKDIR /app\n", ""},
}

// checkCPUBuildStage: modelserver without build tags (the cuda tag needs
// the driver at run time), with paths trimmed.
func checkCPUBuildStage(d *dockerfile, r repo, p *problems) {
	runs := checkGoBuild(d, r, p, `go build .*-trimpath .*-o (\S+) \./cmd/modelserver`)
	if strings.Contains(runs, "-tags") {
		p.add("the CPU build sets build tags:\n%s", runs)
	}
}

// checkInstallScript: the CPU library is what scripts/install-onnxruntime.sh
// installs, run in a Node stage (the script needs npm), so the tests and the
// image share the script's pinned version and sha256; nothing here pins or
// fetches ONNX Runtime itself.
func checkInstallScript(d *dockerfile, r repo, p *problems) {
	version := regexp.MustCompile(`(?m)^ORT_VERSION=(\d+\.\d+\.\d+)$`).FindSubmatch(r.ortScript)
	if version == nil || !regexp.MustCompile(`(?m)^ORT_SHA256=[0-9a-f]{64}$`).Match(r.ortScript) {
		p.add("%s pins no ORT_VERSION=X.Y.Z and ORT_SHA256=<sha256>", ortScript)
		return
	}
	if !bytes.Contains(r.ortScript, []byte(`"${ORT_INSTALL_DIR:-}"`)) {
		p.add("%s does not read ORT_INSTALL_DIR", ortScript)
	}

	ort := d.stage(p, "onnxruntime")
	if img := d.expand(p, ort.BaseName); !strings.HasPrefix(img, "node:") {
		p.add("onnxruntime stage base %q is not a Node image; %s needs npm", img, ortScript)
	}
	var script string
	for _, c := range commands[*instructions.CopyCommand](ort) {
		if c.From == "" && slices.Equal(c.SourcePaths, []string{ortScript}) {
			script = c.DestPath
			if strings.HasSuffix(script, "/") {
				script += path.Base(ortScript)
			}
		}
	}
	var libDir string
	install := regexp.MustCompile(`^ORT_INSTALL_DIR=(\S+) (\S+)$`)
	for _, line := range runLines(ort) {
		if m := install.FindStringSubmatch(line); m != nil && m[2] == script {
			libDir = strings.TrimSuffix(m[1], "/") + "/"
		}
	}
	if libDir == "" {
		p.add("the onnxruntime stage does not COPY %s and run it as ORT_INSTALL_DIR=DIR SCRIPT", ortScript)
	} else {
		checkLibraryFound(d, p, libDir)
	}

	// One source of truth: the script's pin.
	for name := range d.args {
		if name == "ORT_VERSION" || name == "ORT_SHA256" {
			p.add("ARG %s re-pins what %s pins", name, ortScript)
		}
	}
	otherRelease := regexp.MustCompile(`libonnxruntime\.so\.(\d+\.\d+\.\d+)`)
	for _, s := range d.stages {
		for _, c := range s.Commands {
			code := fmt.Sprint(c)
			for _, name := range []string{"ORT_VERSION", "ORT_SHA256"} {
				if regexp.MustCompile(`^(ARG|ENV)\s+` + name + `\b`).MatchString(code) {
					p.add("%q re-pins what %s pins", code, ortScript)
				}
			}
			if strings.Contains(code, "onnxruntime-node") || strings.Contains(code, "npm ") {
				p.add("%q fetches ONNX Runtime itself; %s does", code, ortScript)
			}
			for _, m := range otherRelease.FindAllStringSubmatch(code, -1) {
				if m[1] != string(version[1]) {
					p.add("%q names ONNX Runtime %s; %s installs %s", code, m[1], ortScript, version[1])
				}
			}
		}
	}
}

// checkCPURuntimeStage: Debian slim of the build stage's release (the cgo
// binary needs its glibc), the CA certificates the Hub download needs, a
// Hugging Face cache the user owns on a volume, HTTP and gRPC exposed, and
// the CPU asked for by default.
func checkCPURuntimeStage(d *dockerfile, _ repo, p *problems) {
	last := checkImage(d, p, imageWants{ports: []string{"8080", "8081"}, cmd: []string{"--device", "cpu"}})
	img := d.expand(p, last.BaseName)
	release, slim := strings.CutSuffix(strings.TrimPrefix(img, "debian:"), "-slim")
	if !strings.HasPrefix(img, "debian:") || !slim {
		p.add("runtime base %q is not a Debian slim image", img)
	}
	if build := d.expand(p, d.stage(p, "build").BaseName); !strings.HasSuffix(build, "-"+release) {
		p.add("build base %q is not of the runtime's Debian release %q", build, release)
	}
	if !installs(last, "ca-certificates") {
		p.add("ca-certificates is not installed; --model phi3 downloads over TLS")
	}

	cache := envOf(last)["HF_HOME"]
	if !strings.HasPrefix(cache, "/") {
		p.add("HF_HOME %q: want the absolute path of the Hugging Face cache", cache)
		return
	}
	var user string
	for _, u := range commands[*instructions.UserCommand](last) {
		user = u.User
	}
	runs := strings.Join(runLines(last), "\n")
	if !strings.Contains(runs, "mkdir -p "+cache) || !strings.Contains(runs, "chown "+user+" "+cache) {
		p.add("HF_HOME %s is not created and given to %s (mkdir -p, chown), so a fresh volume there is not writable", cache, user)
	}
	var volumes []string
	for _, v := range commands[*instructions.VolumeCommand](last) {
		volumes = append(volumes, v.Volumes...)
	}
	if !slices.Contains(volumes, cache) {
		p.add("HF_HOME %s is not a VOLUME (%v)", cache, volumes)
	}
}

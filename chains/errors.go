package chains

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
)

// Sentinel errors of the package.
var (
	// ErrInvalidChain wraps every start-up validation error of New.
	ErrInvalidChain = errors.New("chains: invalid chain")
	// ErrNotBound is returned by a Dep that was neither bound by the Chain
	// nor given a mock.
	ErrNotBound = errors.New("chains: dependency is not bound")
	// ErrTimeout is returned when one attempt to call a dependency takes
	// longer than its timeout.
	ErrTimeout = errors.New("chains: timeout calling remote Chainlet")
	// ErrBadDynamicConfig means the dynamic Chainlet config could not be read.
	ErrBadDynamicConfig = errors.New("chains: bad dynamic chainlet config")
)

// RemoteErrorDetail is the error a failing Chainlet answers, as Truss Chains
// writes it (HTTP 500, body {"error": RemoteErrorDetail}). The field types are
// those of Truss's strict pydantic model, so a Python Chainlet can re-raise it.
type RemoteErrorDetail struct {
	ExceptionClsName    string       `json:"exception_cls_name"`
	ExceptionModuleName *string      `json:"exception_module_name"`
	ExceptionMessage    string       `json:"exception_message"`
	UserStackTrace      []StackFrame `json:"user_stack_trace"`
}

// StackFrame is one frame of RemoteErrorDetail.UserStackTrace.
type StackFrame struct {
	Filename string  `json:"filename"`
	Lineno   *int    `json:"lineno"`
	Name     string  `json:"name"`
	Line     *string `json:"line"`
}

// Format renders the detail as Python's RemoteErrorDetail.format():
//
//	Chainlet-Traceback (most recent call last):
//	  File "f.go", line 3, in run
//	    code
//	ValueError: message
//	(Exception class defined in `builtins`.)
func (d RemoteErrorDetail) Format() string {
	var b strings.Builder
	b.WriteString("Chainlet-Traceback (most recent call last):\n")
	for _, f := range d.UserStackTrace {
		lineno := "None"
		if f.Lineno != nil {
			lineno = strconv.Itoa(*f.Lineno)
		}
		fmt.Fprintf(&b, "  File \"%s\", line %s, in %s\n", f.Filename, lineno, f.Name)
		if f.Line != nil && strings.TrimSpace(*f.Line) != "" {
			fmt.Fprintf(&b, "    %s\n", strings.TrimSpace(*f.Line))
		}
	}
	b.WriteString(d.ExceptionClsName + ": " + d.ExceptionMessage)
	if d.ExceptionModuleName != nil && *d.ExceptionModuleName != "" {
		fmt.Fprintf(&b, "\n(Exception class defined in `%s`.)", *d.ExceptionModuleName)
	}
	return b.String()
}

const chainedHeader = "(showing chained remote errors, root error at the bottom)"

// chainedMessage is the message Truss gives the exception it re-raises for a
// dependency's error: the base message and the remote traceback, indented
// as a tree branch whose last line starts with ╰.
func chainedMessage(baseMsg string, d RemoteErrorDetail) string {
	lines := strings.Split(d.Format(), "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != "" { // textwrap.indent skips blank lines
			lines[i] = "│   " + l
		}
	}
	if last := lines[len(lines)-1]; strings.HasPrefix(last, "│") {
		lines[len(lines)-1] = "╰" + strings.TrimPrefix(last, "│")
	}
	return chainedHeader + "\n├─ " + baseMsg + "\n" + strings.Join(lines, "\n")
}

// RemoteError is a dependency's failure as the caller sees it: the HTTP
// status and, when the dependency is a Chainlet, its RemoteErrorDetail. Its
// message is the nested Chainlet-Traceback tree Truss prints. Unwrap returns
// the error of the next Chainlet down when this one failed because of its own
// dependency, so errors.As finds every level and Root the original error.
type RemoteError struct {
	// Chainlet is the dependency's name.
	Chainlet string
	// Status is the HTTP status of the answer.
	Status int
	// TraceID is the traceparent of the call ("None" when there was none,
	// as Truss prints it).
	TraceID string
	// Detail is the Chainlet's error; nil when the dependency answered a
	// plain Truss error or a body that could not be read.
	Detail *RemoteErrorDetail
	// Message is the plain error of a Truss model ({"error": "..."}), or
	// why the body could not be read as an error.
	Message string

	cause  *RemoteError
	frames []StackFrame // where the caller called the dependency
}

// BaseMessage is Truss's first line about the failed call.
func (e *RemoteError) BaseMessage() string {
	return fmt.Sprintf("Error calling dependency Chainlet `%s`, HTTP status=%d, trace ID=`%s`.", e.Chainlet, e.Status, e.TraceID)
}

func (e *RemoteError) Error() string {
	switch {
	case e.Detail != nil:
		return chainedMessage(e.BaseMessage(), *e.Detail)
	case e.Message != "":
		return fmt.Sprintf("%s: '%s'", e.BaseMessage(), e.Message)
	}
	return e.BaseMessage()
}

// Unwrap returns the remote error one Chainlet further down, or nil.
func (e *RemoteError) Unwrap() error {
	if e.cause == nil {
		return nil
	}
	return e.cause
}

// Root returns the deepest remote error of the chain: the Chainlet where the
// failure started.
func (e *RemoteError) Root() *RemoteError {
	for e.cause != nil {
		e = e.cause
	}
	return e
}

// ClassName is the exception class of the root error, as Python re-raises it
// (for example "ValueError"), or "" for a plain Truss error.
func (e *RemoteError) ClassName() string {
	if e.Detail == nil {
		return ""
	}
	return e.Detail.ExceptionClsName
}

// parseChained reads back the remote error that a chained message (one that
// chainedMessage wrote, at any depth of nesting) describes, or nil when msg
// is not one. Truss nests each dependency's error in the message of the
// error above it, so this recovers the chain from the root Chainlet's text.
func parseChained(msg string) *RemoteError {
	rest, ok := strings.CutPrefix(msg, chainedHeader+"\n├─ ")
	if !ok {
		return nil
	}
	base, body, ok := strings.Cut(rest, "\n")
	if !ok {
		return nil
	}
	e := parseBaseMessage(base)
	if e == nil {
		return nil
	}
	var lines []string
	for _, l := range strings.Split(body, "\n") {
		switch {
		case strings.HasPrefix(l, "│   "):
			lines = append(lines, strings.TrimPrefix(l, "│   "))
		case strings.HasPrefix(l, "╰   "):
			lines = append(lines, strings.TrimPrefix(l, "╰   "))
		case strings.TrimSpace(l) == "":
			lines = append(lines, "")
		default:
			return nil
		}
	}
	d, ok := parseFormatted(lines)
	if !ok {
		return nil
	}
	e.Detail = &d
	e.cause = parseChained(d.ExceptionMessage)
	return e
}

func parseBaseMessage(s string) *RemoteError {
	rest, ok := strings.CutPrefix(s, "Error calling dependency Chainlet `")
	if !ok {
		return nil
	}
	name, rest, ok := strings.Cut(rest, "`, HTTP status=")
	if !ok {
		return nil
	}
	status, rest, ok := strings.Cut(rest, ", trace ID=`")
	if !ok {
		return nil
	}
	code, err := strconv.Atoi(status)
	trace, ok := strings.CutSuffix(rest, "`.")
	if err != nil || !ok {
		return nil
	}
	return &RemoteError{Chainlet: name, Status: code, TraceID: trace}
}

// parseFormatted reads the lines of RemoteErrorDetail.Format back.
func parseFormatted(lines []string) (RemoteErrorDetail, bool) {
	var d RemoteErrorDetail
	if len(lines) < 2 || lines[0] != "Chainlet-Traceback (most recent call last):" {
		return d, false
	}
	i := 1
	for i < len(lines) && strings.HasPrefix(lines[i], "  File \"") {
		f, ok := parseFrameLine(lines[i])
		if !ok {
			return d, false
		}
		i++
		if i < len(lines) && strings.HasPrefix(lines[i], "    ") {
			code := strings.TrimPrefix(lines[i], "    ")
			f.Line = &code
			i++
		}
		d.UserStackTrace = append(d.UserStackTrace, f)
	}
	if i >= len(lines) {
		return d, false
	}
	cls, msg, ok := strings.Cut(strings.Join(lines[i:], "\n"), ": ")
	if !ok || cls == "" || strings.ContainsAny(cls, " \n") {
		return d, false
	}
	d.ExceptionClsName = cls
	if idx := strings.LastIndex(msg, "\n(Exception class defined in `"); idx >= 0 && strings.HasSuffix(msg, "`.)") {
		mod := msg[idx+len("\n(Exception class defined in `") : len(msg)-len("`.)")]
		d.ExceptionModuleName = &mod
		msg = msg[:idx]
	}
	d.ExceptionMessage = msg
	return d, true
}

func parseFrameLine(l string) (StackFrame, bool) {
	rest := strings.TrimPrefix(l, "  File \"")
	idx := strings.LastIndex(rest, "\", line ")
	if idx < 0 {
		return StackFrame{}, false
	}
	f := StackFrame{Filename: rest[:idx]}
	num, name, ok := strings.Cut(rest[idx+len("\", line "):], ", in ")
	if !ok {
		return StackFrame{}, false
	}
	if num != "None" {
		n, err := strconv.Atoi(num)
		if err != nil {
			return StackFrame{}, false
		}
		f.Lineno = &n
	}
	f.Name = name
	return f, true
}

// Error is a Chainlet error with an explicit exception class, such as the
// ValueError a Python Chainlet raises, and the user's stack where it was
// created. Return one from RunRemote (directly or wrapped) to control what
// the caller re-raises; see NewError and ValueError.
type Error struct {
	// Class and Module name the exception class, as Python resolves it:
	// getattr(sys.modules[Module], Class); Module "builtins" for built-in
	// exceptions.
	Class, Module string
	// Message is the exception's message.
	Message string
	// Status is the HTTP status the Chainlet answers with; 0 means 500.
	Status int

	frames []StackFrame
}

// Error returns the message, as str() of a Python exception does.
func (e *Error) Error() string { return e.Message }

// NewError returns an Error of the given Python exception class, recording
// the caller's stack.
func NewError(class, module, message string) *Error {
	return &Error{Class: class, Module: module, Message: message, frames: userFrames(2)}
}

// ValueError returns a Python ValueError (module builtins) with a formatted
// message, the error Chainlets conventionally raise for bad arguments.
func ValueError(format string, args ...any) *Error {
	return &Error{Class: "ValueError", Module: "builtins", Message: fmt.Sprintf(format, args...), frames: userFrames(2)}
}

// HTTPError returns an error that answers with the given HTTP status, as
// fastapi.HTTPException does in a Python Chainlet (which re-raises it as
// one).
func HTTPError(status int, detail string) *Error {
	return &Error{Class: "HTTPException", Module: "fastapi", Message: detail, Status: status, frames: userFrames(2)}
}

// errorDetail builds the detail a Chainlet answers for err, and its status.
// A remote error in err's chain gives its root's class, as Python re-raises
// the root class at every level; the message is err's full text, which nests
// the dependency's traceback.
func errorDetail(err error) (RemoteErrorDetail, int) {
	d := RemoteErrorDetail{ExceptionMessage: err.Error()}
	status := http.StatusInternalServerError
	var ce *Error
	var re *RemoteError
	var pe *panicError
	switch {
	case errors.As(err, &ce):
		d.ExceptionClsName = ce.Class
		d.ExceptionModuleName = strPtr(ce.Module)
		if ce.Module == "" {
			d.ExceptionModuleName = nil
		}
		if ce.Status != 0 {
			status = ce.Status
		}
		if d.UserStackTrace == nil {
			d.UserStackTrace = ce.frames
		}
	case errors.As(err, &pe):
		d.ExceptionClsName, d.ExceptionModuleName = "RuntimeError", strPtr("builtins")
		if d.UserStackTrace == nil {
			d.UserStackTrace = pe.frames
		}
	case errors.As(err, &re):
		d.ExceptionClsName = "GenericRemoteException"
		d.ExceptionModuleName = strPtr("truss_chains.public_types")
		if re.Detail != nil {
			d.ExceptionClsName = re.Detail.ExceptionClsName
			d.ExceptionModuleName = re.Detail.ExceptionModuleName
		}
		if d.UserStackTrace == nil {
			d.UserStackTrace = re.frames
		}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, ErrTimeout):
		d.ExceptionClsName, d.ExceptionModuleName = "TimeoutError", strPtr("builtins")
	default:
		d.ExceptionClsName, d.ExceptionModuleName = goErrorClass(err)
	}
	if d.UserStackTrace == nil {
		d.UserStackTrace = []StackFrame{}
	}
	return d, status
}

// goErrorClass names a plain Go error by its dynamic type: the type name as
// the class and the package path as the module, which Python cannot resolve
// and re-raises as GenericRemoteException. Wrappers from fmt and errors
// (fmt.Errorf's %w) are looked through to the first meaningful type.
func goErrorClass(err error) (string, *string) {
	named := func(e error) reflect.Type {
		t := reflect.TypeOf(e)
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		return t
	}
	t := named(err)
	for e := err; e != nil; e = errors.Unwrap(e) {
		t = named(e)
		if p := t.PkgPath(); p != "fmt" && p != "errors" {
			break
		}
	}
	if t.Name() == "" {
		return "Error", nil
	}
	return t.Name(), strPtr(t.PkgPath())
}

func strPtr(s string) *string { return &s }

// userFrames returns the stack above the caller (skip frames up), keeping
// only user code: frames below RunRemote's caller, outside the Go runtime,
// the standard library and this package. Frames are ordered outermost first,
// as Python prints them.
func userFrames(skip int) []StackFrame {
	pcs := make([]uintptr, 64)
	n := runtime.Callers(skip+1, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	var out []StackFrame
	for {
		f, more := frames.Next()
		user := isUserFrame(f)
		if user {
			line := f.Line
			out = append(out, StackFrame{Filename: f.File, Lineno: &line, Name: shortFuncName(f.Function), Line: sourceLine(f.File, f.Line)})
		}
		if !more || user && strings.HasSuffix(f.Function, ".RunRemote") {
			break
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

const packagePath = "github.com/modelserver/modelserver/chains."

func isUserFrame(f runtime.Frame) bool {
	fn := f.Function
	if fn == "" || strings.HasPrefix(fn, packagePath) || strings.HasPrefix(fn, "golang.org/x/sync/") {
		return false
	}
	dir, base := "", fn
	if i := strings.LastIndex(fn, "/"); i >= 0 {
		dir, base = fn[:i], fn[i+1:]
	}
	pkg, _, _ := strings.Cut(base, ".")
	if dir == "" {
		return pkg == "main" // the rest without a slash is the standard library
	}
	first, _, _ := strings.Cut(dir, "/")
	return strings.Contains(first, ".")
}

// shortFuncName drops the import path: "example.com/x/pkg.(*T).M" → "(*T).M".
func shortFuncName(fn string) string {
	if i := strings.LastIndex(fn, "/"); i >= 0 {
		fn = fn[i+1:]
	}
	if _, rest, ok := strings.Cut(fn, "."); ok {
		return rest
	}
	return fn
}

var sourceCache sync.Map // file name → []string, or nil when unreadable

// sourceLine returns the text of a source line when the file is on this
// machine (development, tests), as Python's traceback shows it.
func sourceLine(file string, line int) *string {
	v, ok := sourceCache.Load(file)
	if !ok {
		var lines []string
		if f, err := os.Open(file); err == nil {
			s := bufio.NewScanner(f)
			for s.Scan() {
				lines = append(lines, s.Text())
			}
			f.Close()
		}
		v, _ = sourceCache.LoadOrStore(file, lines)
	}
	lines := v.([]string)
	if line < 1 || line > len(lines) {
		return nil
	}
	text := strings.TrimSpace(lines[line-1])
	return &text
}

// panicError is a panic in a Chainlet, reported like an exception.
type panicError struct {
	value  any
	frames []StackFrame
}

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.value) }

// Package testenv starts the real servers Sluice's integration tests run
// against, MinIO, moto and PostgreSQL, on 127.0.0.1 with random ports and
// temporary directories, and stops them by process id.
//
// A missing prerequisite fails the test with the command that fixes it; no
// test skips for want of a server. Packages that share servers between tests
// call Main from TestMain so that the servers stop when the package ends.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// process is a server started by the harness.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// startProcess runs cmd with its output in logPath. The child gets SIGKILL if
// the test binary dies first (Pdeathsig), so no server outlives its test.
func startProcess(name string, cmd *exec.Cmd, logPath string) (*process, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s: create log: %w", name, err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("%s: start %s: %w", name, cmd.Path, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	announce("started %s (pid %d), log %s", name, cmd.Process.Pid, logPath)
	return p, nil
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig to the process group by its id, and SIGKILL after grace.
func (p *process) stop(sig syscall.Signal, grace time.Duration) {
	if p.exited() {
		return
	}
	pid := p.cmd.Process.Pid
	_ = syscall.Kill(-pid, sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-p.done
	}
	announce("stopped %s (pid %d)", p.name, pid)
}

// tail answers the end of the process's log, for failure messages.
func (p *process) tail() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return ""
	}
	const max = 4000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// waitReady polls ready until it succeeds, the process exits, or the
// timeout passes.
func (p *process) waitReady(timeout time.Duration, ready func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%s exited before it was ready (%v); log tail:\n%s", p.name, p.err, p.tail())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		last = ready(ctx)
		cancel()
		if last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %s: %v; log tail:\n%s", p.name, timeout, last, p.tail())
}

// freePort answers a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// announce prints a harness line to stderr, so test output shows which
// servers ran even without -v.
func announce(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "testenv: "+format+"\n", args...)
}

// ToolsDir is where built test tools live: $SLUICE_TOOLS_DIR, or
// $HOME/.cache/sluice/tools. `make tools` fills it.
func ToolsDir() string {
	if d := os.Getenv("SLUICE_TOOLS_DIR"); d != "" {
		return d
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".cache", "sluice", "tools")
	}
	return filepath.Join(os.TempDir(), "sluice-tools")
}

// tool answers the path of a built tool, or an error naming the fix.
func tool(name string) (string, error) {
	p := filepath.Join(ToolsDir(), name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s is not built at %s: run `make tools` (it builds the pinned version from tools/go.mod into %s)", name, p, ToolsDir())
	}
	return p, nil
}

// shared holds servers started once per test binary and stopped by Main.
var shared struct {
	sync.Mutex
	inMain bool
	stops  []func()
}

// Main runs the package's tests and then stops every shared server. Call it
// from TestMain: `func TestMain(m *testing.M) { testenv.Main(m) }`.
func Main(m interface{ Run() int }) {
	shared.Lock()
	shared.inMain = true
	shared.Unlock()
	code := m.Run()
	shared.Lock()
	stops := shared.stops
	shared.stops = nil
	shared.Unlock()
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
	os.Exit(code)
}

var errNoMain = errors.New("shared test servers need `func TestMain(m *testing.M) { testenv.Main(m) }` in the package, so that they stop when its tests end")

// onceShared starts a shared server with start the first time and answers
// it afterwards; a failed start is remembered so later tests fail fast too.
type onceShared[T any] struct {
	once sync.Once
	val  T
	err  error
}

func (o *onceShared[T]) get(start func() (T, func(), error)) (T, error) {
	shared.Lock()
	inMain := shared.inMain
	shared.Unlock()
	if !inMain {
		var zero T
		return zero, errNoMain
	}
	o.once.Do(func() {
		var stop func()
		o.val, stop, o.err = start()
		if o.err == nil {
			shared.Lock()
			shared.stops = append(shared.stops, stop)
			shared.Unlock()
		}
	})
	return o.val, o.err
}

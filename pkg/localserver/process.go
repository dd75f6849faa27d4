// Package localserver starts real servers, MinIO, moto and PostgreSQL, as
// child processes on 127.0.0.1 with random ports and temporary directories,
// and stops them by process id. The test harness (pkg/testenv) and
// `sluice demo` use it. A missing prerequisite is an error that names the
// command that fixes it.
package localserver

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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

// whole answers the process's log as written so far.
func (p *process) whole() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
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

// httpOK answers a readiness check that GETs url and wants 200 OK.
func httpOK(url string) func(context.Context) error { return httpOKWith(http.DefaultClient, url) }

// httpOKWith is httpOK through client (one trusting a test CA).
func httpOKWith(client *http.Client, url string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

// freePort answers a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ports, err := freePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// freePorts answers n distinct free ports: each is held until all are
// found, since a port closed at once may be handed out again by the next
// ask (two services then raced for one port, and the readiness check of
// one was answered by the other).
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// announce prints a harness line to stderr, so test output shows which
// servers ran even without -v.
func announce(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "localserver: "+format+"\n", args...)
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

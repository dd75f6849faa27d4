package localserver

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Sluice runs the three services (the delivery service possibly as
// several replicas), built from this module's source, each
// as its own process on 127.0.0.1, against a MinIO: for the tests that
// kill a service by its process id, and for the benchmark that measures
// one service's memory.
type Sluice struct {
	// Dir holds the shared data directory and the logs.
	Dir string
	// Addrs are the services' gRPC addresses by name: credential,
	// destination, delivery.
	Addrs map[string]string
	bin   string
	args  map[string][]string
	env   map[string][]string
	procs map[string]*process
	names []string
}

// SluiceOptions adjust the services.
type SluiceOptions struct {
	MinIO *MinIO
	// S3Endpoint, when set, is where the services send S3 requests instead
	// of MinIO's own endpoint (a fault-injecting proxy in front of it).
	S3Endpoint string
	// Delivery adds flags to the delivery service; Destination and
	// Credential to those.
	Delivery, Destination, Credential []string
	// DeliveryEnv adds environment variables to the delivery service (its
	// platform identity, for staging on S3; GOMEMLIMIT).
	DeliveryEnv []string
	// DeliveryReplicas is how many delivery processes run (1 when zero):
	// the second is named delivery-2, and so on, each with its own address
	// and --instance, all with the same flags (give them one PostgreSQL
	// with --database, and staging on S3 with --staging-url).
	DeliveryReplicas int
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// buildServices builds the service binaries once per process.
func buildServices() (string, error) {
	buildOnce.Do(func() {
		root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
		if err != nil {
			buildErr = fmt.Errorf("find the module: %w", err)
			return
		}
		if buildDir, buildErr = os.MkdirTemp("", "sluice-bin-"); buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", buildDir+"/", "./services/credential/cmd/sluice-credential",
			"./services/destination/cmd/sluice-destination", "./services/delivery/cmd/sluice-delivery", "./cmd/sluice-testidp")
		cmd.Dir = strings.TrimSpace(string(root))
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build the services: %v\n%s", err, out)
		}
	})
	return buildDir, buildErr
}

// StartSluice builds the services if needed and starts them one by one
// (the first creates the development keys the others read).
func StartSluice(o SluiceOptions) (*Sluice, error) {
	bin, err := buildServices()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "sluice-services-")
	if err != nil {
		return nil, err
	}
	s := &Sluice{Dir: dir, Addrs: map[string]string{}, bin: bin, procs: map[string]*process{}, env: map[string][]string{}}
	s.names = []string{"credential", "destination", "delivery"}
	for i := 2; i <= o.DeliveryReplicas; i++ {
		s.names = append(s.names, fmt.Sprintf("delivery-%d", i))
	}
	ports, err := freePorts(len(s.names))
	if err != nil {
		return nil, err
	}
	for i, name := range s.names {
		s.Addrs[name] = hostPort(ports[i])
	}
	endpoint := o.MinIO.Endpoint
	if o.S3Endpoint != "" {
		endpoint = o.S3Endpoint
	}
	s3 := []string{"--s3-endpoint", endpoint, "--s3-path-style", "--aws-region", o.MinIO.Region}
	if o.MinIO.CAFile != "" {
		s3 = append(s3, "--aws-ca-bundle", o.MinIO.CAFile)
	}
	common := []string{"--data-dir", filepath.Join(dir, "data"), "--log-level", "info"}
	s.args = map[string][]string{
		"credential":  append(append(append([]string{"--destination-addr", s.Addrs["destination"], "--access-key-sessions", "assume-role", "--access-key-sts-endpoint", o.MinIO.Endpoint}, s3...), common...), o.Credential...),
		"destination": append(append(append([]string{"--credential-addr", s.Addrs["credential"]}, s3...), common...), o.Destination...),
	}
	for _, name := range s.names[2:] {
		args := []string{"--credential-addr", s.Addrs["credential"], "--destination-addr", s.Addrs["destination"]}
		if o.DeliveryReplicas > 1 {
			args = append(args, "--instance", name)
		}
		s.args[name] = append(append(append(args, s3...), common...), o.Delivery...)
		s.env[name] = o.DeliveryEnv
	}
	for _, name := range s.names {
		if err := s.Start(name); err != nil {
			s.Stop()
			return nil, err
		}
	}
	return s, nil
}

// Start starts (or starts again) one service and waits until it serves.
func (s *Sluice) Start(name string) error {
	if p := s.procs[name]; p != nil && !p.exited() {
		return fmt.Errorf("sluice-%s is running", name)
	}
	binary, _, _ := strings.Cut(name, "-") // delivery-2 runs sluice-delivery
	cmd := exec.Command(filepath.Join(s.bin, "sluice-"+binary), append([]string{"--listen", s.Addrs[name]}, s.args[name]...)...)
	cmd.Env = append(os.Environ(), s.env[name]...)
	p, err := startProcess("sluice-"+name, cmd, filepath.Join(s.Dir, fmt.Sprintf("%s-%d.log", name, time.Now().UnixNano())))
	if err != nil {
		return err
	}
	s.procs[name] = p
	return p.waitReady(60*time.Second, serving(s.Addrs[name], serviceNames[binary]))
}

// serviceNames are the gRPC services whose health says a process serves:
// its own, so that another server on the address cannot answer for it.
var serviceNames = map[string]string{
	"credential":  "sluice.credential.v1.CredentialService",
	"destination": "sluice.destination.v1.DestinationService",
	"delivery":    "sluice.delivery.v1.DeliveryService",
}

// Restart stops a service gracefully (SIGTERM) and starts it again with
// extra flags after its own.
func (s *Sluice) Restart(name string, extra ...string) error {
	s.procs[name].stop(syscall.SIGTERM, 10*time.Second)
	base := s.args[name]
	s.args[name] = append(append([]string{}, base...), extra...)
	err := s.Start(name)
	s.args[name] = base
	return err
}

// Pid answers a service's process id.
func (s *Sluice) Pid(name string) int { return s.procs[name].cmd.Process.Pid }

// Kill ends a service at once with SIGKILL, by its process id, as a crash
// would.
func (s *Sluice) Kill(name string) {
	p := s.procs[name]
	_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	announce("killed sluice-%s (pid %d)", name, p.cmd.Process.Pid)
}

// Log answers the end of a service's current log.
func (s *Sluice) Log(name string) string { return s.procs[name].tail() }

// WholeLog answers everything service name logged so far (since it was
// last started), for tests that look for a line.
func (s *Sluice) WholeLog(name string) string { return s.procs[name].whole() }

// Stop stops every service (SIGTERM, then SIGKILL) and removes its files.
func (s *Sluice) Stop() {
	for _, name := range slices.Backward(s.names) {
		if p := s.procs[name]; p != nil {
			p.stop(syscall.SIGTERM, 10*time.Second)
		}
	}
	os.RemoveAll(s.Dir)
}

func serving(addr, service string) func(context.Context) error {
	return func(ctx context.Context) error {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer cc.Close()
		res, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			return err
		}
		if res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("%s is %s", addr, res.GetStatus())
		}
		return nil
	}
}

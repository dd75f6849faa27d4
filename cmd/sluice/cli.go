package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"

	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/mtls"
)

// Exit codes of the client commands: stable, for scripts.
const (
	exitOK = 0
	// exitFailure is any other failure.
	exitFailure = 1
	// exitInvalid is a request Sluice refused as invalid (a usage error,
	// InvalidArgument, FailedPrecondition, AlreadyExists, Aborted).
	exitInvalid = 2
	// exitNotFound is a resource that does not exist or that the caller
	// may not see or use (NotFound, PermissionDenied, Unauthenticated).
	exitNotFound = 3
	// exitDeliveryFailed is a delivery that ran and failed: its workflow
	// says why and how to resolve it.
	exitDeliveryFailed = 4
	// exitUnavailable is Sluice not answering in time (Unavailable,
	// DeadlineExceeded, ResourceExhausted): try again.
	exitUnavailable = 5
)

// exitError carries the exit code of an error the command already printed.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitCode answers the exit code of err, a gRPC status or a usage error.
func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	e := apierror.FromStatus(err)
	if e == nil {
		return exitOK
	}
	if e.Code == codes.Unknown {
		return exitFailure // not from the server: a local failure
	}
	if e.Metadata["delivery"] != "" && e.Code != codes.InvalidArgument && e.Code != codes.NotFound && e.Code != codes.PermissionDenied {
		return exitDeliveryFailed
	}
	switch e.Code {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.AlreadyExists, codes.Aborted, codes.OutOfRange:
		return exitInvalid
	case codes.NotFound, codes.PermissionDenied, codes.Unauthenticated:
		return exitNotFound
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
		return exitUnavailable
	}
	return exitFailure
}

// printError writes err as a person reads it: the code and stable reason,
// the message, each field violation, and the metadata; never a stack.
func printError(w io.Writer, err error) {
	var ee *exitError
	if errors.As(err, &ee) && ee.code == exitInvalid && apierror.FromStatus(ee.err).Code == codes.Unknown {
		fmt.Fprintf(w, "sluice: %v\n", ee.err) // a usage error
		return
	}
	e := apierror.FromStatus(err)
	if e == nil || e.Code == codes.Unknown {
		fmt.Fprintf(w, "sluice: %v\n", err)
		return
	}
	reason := apierror.ReasonName(e.Reason)
	if reason == "" || strings.HasSuffix(reason, "UNSPECIFIED") {
		reason = strings.ToUpper(e.Code.String())
	}
	fmt.Fprintf(w, "sluice: %s (%s): %s\n", reason, e.Code, e.Message)
	for _, v := range e.Violations {
		fmt.Fprintf(w, "  - %s: %s\n", v.Field, v.Description)
	}
	for _, k := range sortedKeys(e.Metadata) {
		fmt.Fprintf(w, "  %s: %s\n", k, e.Metadata[k])
	}
}

// clientConfig is where the client finds Sluice and who it is, from flags,
// then SLUICE_* variables, then the config file.
type clientConfig struct {
	// Addr is a host (the services on their default ports 7401-7403) or
	// host:port (one gRPC-aware gateway in front of all three).
	Addr string `yaml:"addr"`
	// CredentialAddr, DestinationAddr and DeliveryAddr override one
	// service's address.
	CredentialAddr  string `yaml:"credential_addr"`
	DestinationAddr string `yaml:"destination_addr"`
	DeliveryAddr    string `yaml:"delivery_addr"`
	// Token is the bearer token (JWT) calls carry.
	Token string `yaml:"token"`
	// Environment is the default environment of names given by id.
	Environment string `yaml:"environment"`

	// TLS is the client's certificate and the CA, for services that
	// speak mutual TLS.
	TLS mtls.Config `yaml:"tls"`

	configFile string
	tokenFile  string
	output     string
	timeout    time.Duration
}

// defaultConfigFile answers ~/.config/sluice/config.yaml (or under
// $XDG_CONFIG_HOME).
func defaultConfigFile() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "sluice", "config.yaml")
}

// addClientFlags registers the flags of every client command on fs.
func (c *clientConfig) addClientFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Addr, "addr", "", "Sluice's host (services on ports 7401-7403) or host:port of one gateway to all three (default 127.0.0.1)")
	fs.StringVar(&c.CredentialAddr, "credential-addr", "", "the credential service's address, overriding --addr")
	fs.StringVar(&c.DestinationAddr, "destination-addr", "", "the destination service's address, overriding --addr")
	fs.StringVar(&c.DeliveryAddr, "delivery-addr", "", "the delivery service's address, overriding --addr")
	fs.StringVar(&c.Token, "token", "", "bearer token (JWT) to call with; on the command line it shows in ps, so prefer SLUICE_TOKEN, --token-file or `sluice login`, which stores one")
	fs.StringVar(&c.tokenFile, "token-file", "", "file holding the bearer token (JWT) to call with (also SLUICE_TOKEN_FILE)")
	fs.StringVar(&c.Environment, "environment", "", "environment of resources named by id: production or a sandbox's name (default production)")
	fs.StringVar(&c.configFile, "config", defaultConfigFile(), "config file with addr, token and environment")
	fs.StringVarP(&c.output, "output", "o", "table", "output: table, json or yaml")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "how long a call may take (deliveries and watches excepted)")
	c.TLS.AddFlags(fs)
}

// load fills what flags and SLUICE_* left empty from the config file.
func (c *clientConfig) load() error {
	switch c.output {
	case "table", "json", "yaml":
	default:
		return usageError("--output %q: want table, json or yaml", c.output)
	}
	if c.Token == "" && c.tokenFile != "" {
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return usageError("--token-file: %v", err)
		}
		c.Token = strings.TrimSpace(string(b))
	}
	if c.configFile != "" {
		b, err := os.ReadFile(c.configFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return fmt.Errorf("read %s: %w", c.configFile, err)
		default:
			var f clientConfig
			if err := yaml.Unmarshal(b, &f); err != nil {
				return usageError("%s: %v", c.configFile, err)
			}
			for _, p := range []struct {
				dst *string
				v   string
			}{
				{&c.Addr, f.Addr}, {&c.CredentialAddr, f.CredentialAddr}, {&c.DestinationAddr, f.DestinationAddr},
				{&c.DeliveryAddr, f.DeliveryAddr}, {&c.Token, f.Token}, {&c.Environment, f.Environment},
			} {
				if *p.dst == "" {
					*p.dst = p.v
				}
			}
		}
	}
	if c.Addr == "" {
		c.Addr = "127.0.0.1"
	}
	if c.Environment == "" {
		c.Environment = "production"
	}
	return nil
}

// addrOf answers the address of service (credential, destination or
// delivery).
func (c *clientConfig) addrOf(service string) string {
	override := map[string]string{"credential": c.CredentialAddr, "destination": c.DestinationAddr, "delivery": c.DeliveryAddr}[service]
	if override != "" {
		return override
	}
	if _, _, err := net.SplitHostPort(c.Addr); err == nil {
		return c.Addr
	}
	return net.JoinHostPort(c.Addr, map[string]string{"credential": "7401", "destination": "7402", "delivery": "7403"}[service])
}

// dial connects to service: with mutual TLS when configured (the server
// must prove it is that service), else plaintext, as Sluice's services
// speak on loopback.
func (c *clientConfig) dial(service string) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if c.TLS.Enabled() {
		if err := c.TLS.Check(); err != nil {
			return nil, usageError("%v", err)
		}
		var err error
		if creds, err = c.TLS.Client(service); err != nil {
			return nil, usageError("%v", err)
		}
	}
	return grpc.NewClient(c.addrOf(service), grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
}

// call answers the call options carrying the token.
func (c *clientConfig) call() []grpc.CallOption {
	if c.Token == "" {
		return nil
	}
	return []grpc.CallOption{grpc.PerRPCCredentials(auth.BearerCredentials(c.Token))}
}

// tenant reads the tenant claim of the token, unverified: the server
// verifies it; the client only names resources with it.
func (c *clientConfig) tenant() (string, error) {
	parts := strings.Split(c.Token, ".")
	if len(parts) != 3 {
		return "", usageError("no token: set SLUICE_TOKEN, give --token-file (or --token), or run `sluice login`")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", usageError("the token is not a JWT")
	}
	var claims struct {
		Tenant string `json:"tenant"`
	}
	if err := json.Unmarshal(b, &claims); err != nil || claims.Tenant == "" {
		return "", usageError("the token names no tenant")
	}
	return claims.Tenant, nil
}

// parent answers tenants/{tenant}/environments/{environment} of the
// token's tenant.
func (c *clientConfig) parent() (string, error) {
	t, err := c.tenant()
	if err != nil {
		return "", err
	}
	return "tenants/" + t + "/environments/" + c.Environment, nil
}

// name answers a resource's full name: one given whole stays as it is, an
// id is put under the parent's collection.
func (c *clientConfig) name(collection, idOrName string) (string, error) {
	if strings.HasPrefix(idOrName, "tenants/") {
		return idOrName, nil
	}
	p, err := c.parent()
	if err != nil {
		return "", err
	}
	return p + "/" + collection + "/" + idOrName, nil
}

// context answers a context bounded by --timeout.
func (c *clientConfig) context(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), c.timeout)
}

func usageError(format string, args ...any) error {
	return &exitError{code: exitInvalid, err: fmt.Errorf(format, args...)}
}

// printer writes answers as the chosen output: a table of columns for
// people, or the messages as JSON or YAML (protobuf JSON names) for
// scripts.
type printer struct {
	w      io.Writer
	output string
}

// tableColumn is one column of a table: its title and its value of a message.
type tableColumn[M proto.Message] struct {
	title string
	value func(M) string
}

// printList prints messages as the output says.
func printList[M proto.Message](p printer, msgs []M, cols []tableColumn[M]) error {
	if p.output != "table" {
		list := make([]any, 0, len(msgs))
		for _, m := range msgs {
			v, err := plain(m)
			if err != nil {
				return err
			}
			list = append(list, v)
		}
		return p.encode(list)
	}
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	var titles []string
	for _, c := range cols {
		titles = append(titles, c.title)
	}
	fmt.Fprintln(tw, strings.Join(titles, "\t"))
	for _, m := range msgs {
		var row []string
		for _, c := range cols {
			row = append(row, c.value(m))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

// printOne prints one message: as JSON or YAML, or for a table its
// fields one per line.
func printOne(p printer, m proto.Message, fields func(w io.Writer)) error {
	if p.output != "table" {
		v, err := plain(m)
		if err != nil {
			return err
		}
		return p.encode(v)
	}
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	fields(tw)
	return tw.Flush()
}

func (p printer) encode(v any) error {
	if p.output == "yaml" {
		enc := yaml.NewEncoder(p.w)
		enc.SetIndent(2)
		return enc.Encode(v)
	}
	enc := json.NewEncoder(p.w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// plain answers m as the plain values its protobuf JSON decodes to, so
// that JSON and YAML show the API's own field names.
func plain(m proto.Message) (any, error) {
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	var v any
	return v, json.Unmarshal(b, &v)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

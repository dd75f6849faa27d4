// Command sluice-console serves the web console on its own: an HTTP
// server that calls the three services as the logged-in user.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice/pkg/launch"
	"github.com/sluicehq/sluice/services/console"
)

func main() {
	if err := run(os.Args[1:]); err != nil && !errors.Is(err, pflag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "sluice-console:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	common := launch.DefaultCommon()
	cfg := console.Config{}
	addrs := console.Addrs{}
	listen := "127.0.0.1:7404"
	fs := pflag.NewFlagSet("sluice-console", pflag.ContinueOnError)
	common.AddFlags(fs)
	cfg.AddFlags(fs)
	fs.StringVar(&listen, "listen", listen, "address to serve the console on (HTTP; plaintext only on loopback, so put TLS in front elsewhere)")
	fs.StringVar(&addrs.Credential, "credential-addr", "127.0.0.1:7401", "address of the credential service")
	fs.StringVar(&addrs.Destination, "destination-addr", "127.0.0.1:7402", "address of the destination service")
	fs.StringVar(&addrs.Delivery, "delivery-addr", "127.0.0.1:7403", "address of the delivery service")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := launch.ApplyEnv(fs); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env, err := launch.Setup(ctx, common, "sluice-console")
	if err != nil {
		return err
	}
	defer env.Close()
	s, closers, err := console.Build(env, cfg, addrs)
	for _, c := range closers {
		defer c.Close()
	}
	if err != nil {
		return err
	}
	lis, err := env.Listen(listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	env.Logger.Info("serving the console", "url", "http://"+lis.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), common.ShutdownTimeout)
	defer cancel()
	return srv.Shutdown(shutdown)
}

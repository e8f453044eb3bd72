// Command wsgate is a WebSocket gateway: it terminates client connections,
// performs the RFC 6455 handshake itself, dials an upstream and relays
// checked frames between the two. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"wsgate/internal/config"
	"wsgate/internal/listen"
	"wsgate/proxy"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = ""

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  wsgate [run] -config FILE      run the gateway
  wsgate validate -config FILE   check a config file, print every problem
  wsgate version                 print the version
`

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "version":
		fmt.Fprintln(stdout, "wsgate", versionString())
		return 0
	case "run", "validate":
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "wsgate: unknown command %q\n%s", cmd, usage)
		return 2
	}
	fs := flag.NewFlagSet("wsgate "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "config file (YAML)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *configPath == "" || fs.NArg() > 0 {
		fmt.Fprint(stderr, "wsgate: -config FILE is required\n"+usage)
		return 2
	}
	cfg, err := config.Load(*configPath)
	if cmd == "validate" {
		return validate(cfg, err, *configPath, stdout, stderr)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return serve(cfg, *configPath, stderr)
}

func validate(cfg *config.Config, err error, path string, stdout, stderr io.Writer) int {
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	fmt.Fprintf(stdout, "%s: OK (%d routes)\n", path, len(cfg.Routes))
	return 0
}

func newLogger(cfg *config.Config, out io.Writer) zerolog.Logger {
	if cfg.Log.Format == "console" {
		out = zerolog.ConsoleWriter{Out: out, TimeFormat: time.RFC3339}
	}
	level, err := zerolog.ParseLevel(cfg.Log.Level)
	if err != nil {
		level = zerolog.InfoLevel
	}
	return zerolog.New(out).Level(level).With().Timestamp().Logger()
}

func serve(cfg *config.Config, path string, stderr io.Writer) int {
	// Catch SIGHUP first: its default action kills the process, and a
	// `systemctl reload` may come while the listeners are still opening.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	log := newLogger(cfg, stderr)
	for _, w := range cfg.Warnings {
		log.Warn().Str("config", path).Msg(w)
	}
	listen.WarnOpenFileLimit(log, cfg.Server.MaxConnections)
	g, err := proxy.New(cfg, log)
	if err != nil {
		log.Error().Err(err).Msg("cannot start")
		return 1
	}
	ls, err := g.Listen()
	if err != nil {
		log.Error().Err(err).Msg("cannot listen")
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		// A second signal exits at once (docs/relay.md "Graceful shutdown"). Listen
		// for it before stop() drops the first handler: in between, a
		// signal would take its default action.
		<-ctx.Done()
		again := make(chan os.Signal, 1)
		signal.Notify(again, syscall.SIGTERM, syscall.SIGINT)
		stop()
		grace := cfg.Server.ShutdownGrace // server: is never reloaded
		log.Info().Dur("shutdown_grace", grace).Msg("signal: draining; a second signal exits at once")
		// The drain ends by shutdown_grace and Serve returns within about
		// a second of it; should anything hang past that, docs/'s
		// bound (exit by shutdown_grace + 2s) still holds.
		overrun := time.NewTimer(grace + overrunMargin)
		select {
		case <-again:
			log.Warn().Msg("second signal: exiting now")
			os.Exit(1)
		case <-overrun.C:
			// Still a graceful shutdown by the documented clock: exit 0.
			log.Error().Dur("after", grace+overrunMargin).Msg("shutdown overran shutdown_grace: exiting now")
			os.Exit(0)
		}
	}()
	// SIGHUP reloads the config (docs/relay.md "Reload and drain"):
	// parsed and validated off to the side; a config that fails is logged
	// and the one in force stays.
	go func() {
		for range hup {
			next, err := config.Load(path)
			if err != nil {
				log.Error().Str("config", path).Str("errors", err.Error()).Msg("reload rejected: the config in force is unchanged")
				continue
			}
			for _, w := range next.Warnings {
				log.Warn().Str("config", path).Msg(w)
			}
			if err := g.Reload(next); err != nil {
				log.Error().Err(err).Str("config", path).Msg("reload failed: the config in force is unchanged")
			}
		}
	}()
	log.Info().Str("version", versionString()).Str("config", path).Int("routes", len(cfg.Routes)).Msg("wsgate starting")
	if err := g.Serve(ctx, ls); err != nil && !errors.Is(err, context.Canceled) {
		log.Error().Err(err).Msg("server failed")
		return 1
	}
	log.Info().Msg("wsgate stopped")
	return 0
}

// overrunMargin is how long after shutdown_grace the process exits even if
// the drain has not returned: inside the documented 2 s, with room for the exit.
const overrunMargin = 1500 * time.Millisecond

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "dev"
}

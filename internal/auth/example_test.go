package auth_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/rs/zerolog"

	"wsgate/internal/auth"
	"wsgate/internal/config"
)

// The one entry point: Check a request, answer a refusal with its Status,
// Header and Reason, or Apply the result to the request before it goes
// upstream.
func ExampleAuth_Check() {
	dir, _ := os.MkdirTemp("", "auth-example")
	defer os.RemoveAll(dir)
	secret := filepath.Join(dir, "secret")
	_ = os.WriteFile(secret, []byte("an example secret of thirty-two bytes"), 0o600)
	cfg, err := config.Parse("example.yaml", []byte(`
defaults:
  auth:
    jwt: {secret_file: `+secret+`, token_from: ["query:access_token", "header:Authorization"]}
routes:
  - {name: app, upstreams: [builtin:echo]}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	a := auth.New(cfg.Routes[0].Settings.Auth, auth.NewRegistry(zerolog.Nop()))

	r := httptest.NewRequest("GET", "/ws", nil)
	res := a.Check(context.Background(), r, "192.0.2.1", "https")
	fmt.Println(res.Allow, res.Status, res.Header.Get("WWW-Authenticate"), res.Outcome)

	r = httptest.NewRequest("GET", "/ws?access_token=not.a.token", nil)
	res = a.Check(context.Background(), r, "192.0.2.1", "https")
	fmt.Println(res.Allow, res.Status, res.Header.Get("WWW-Authenticate"), res.Outcome)
	// Output:
	// false 401 Bearer missing
	// false 401 Bearer error="invalid_token" invalid
}

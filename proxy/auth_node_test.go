package proxy

// Tokens minted by a third JOSE implementation, Node's crypto
// (test/node/jwt-idp.mjs), which also serves the JWK Set: the gateway's
// golang-jwt must accept them as it does go-jose's.

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestAuthNodeMintedTokens(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("node is missing (.ci/run installs it)")
		}
		t.Skip("node is missing")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "jwt-idp.mjs", testIss, testAud)
	cmd.Dir = filepath.Join("..", "test", "node")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err != nil {
		t.Fatalf("node jwt-idp.mjs: %v", err)
	}
	var idp struct {
		JWKS   string            `json:"jwks"`
		Secret string            `json:"secret"`
		Tokens map[string]string `json:"tokens"`
	}
	if err := json.Unmarshal(line, &idp); err != nil {
		t.Fatalf("node jwt-idp.mjs said %q: %v", line, err)
	}
	secret, _ := base64.StdEncoding.DecodeString(idp.Secret)
	// The secret is 32 random bytes and may itself end in '\n' or '\r': a
	// secret file loses one trailing line ending, "\n" or "\r\n" (README
	// "Authentication"), so the file is written with one.
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, append(secret, '\r', '\n'), 0o600); err != nil {
		t.Fatal(err)
	}

	up := echoUpstream(t)
	gw := startGateway(t, e2eHead+"routes:\n"+jwtRoute("node", "/ws", up.URL, idp.JWKS, "secret_file: "+secretFile))
	for i, alg := range []string{"RS256", "ES256", "EdDSA", "HS256"} {
		rc := dialWS(t, gw.Addr, upgradeRequest("a.test", "/ws", "Authorization: Bearer "+idp.Tokens[alg]))
		rc.echoes(t, alg)
		rc.Close()
		if got := up.Requests()[i].Header.Get("X-User-Id"); got != "node-"+alg {
			t.Errorf("%s: upstream X-User-Id %q", alg, got)
		}
	}
	for _, name := range []string{"expired", "wrongAud"} {
		rc := exchange(t, gw.Addr, upgradeRequest("a.test", "/ws", "Authorization: Bearer "+idp.Tokens[name]))
		if rc.resp.StatusCode != 401 || rc.resp.Header.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
			t.Errorf("%s: %s %q", name, rc.resp.Status, rc.resp.Header.Get("WWW-Authenticate"))
		}
	}
}
